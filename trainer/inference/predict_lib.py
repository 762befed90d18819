"""The work behind `dfd-predict` (trainer/predict.py, whose docstring is the user's guide).

`run` expands the inputs (`scoring.expand_inputs`), scores each file through
the stages of `trainer.inference.media` (a crop as given; a photo's or a
video's faces found, aligned and scored, then aggregated), and writes what was
asked: the results table as CSV or JSONL (`write_results`), per-video JSON and
timeline PNGs and annotated photos (`write_media`), Grad-CAM overlays
(`explain_results`, which needs `model.keras` beside the export). A file that
cannot be judged gets a record with its status and reason; it never stops the
rest.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import itertools
import json
import os

from absl import logging
import tensorflow as tf

from preprocessing import paths
from preprocessing.media import faces as faces_lib
from trainer.inference import drawing, media, outputs, scoring
from trainer.inference.scoring import Detector, Prediction, expand_inputs

OUTPUT_FORMATS = outputs.OUTPUT_FORMATS
CSV_COLUMNS = outputs.CSV_COLUMNS
# Statuses of inputs that were read and judged (with or without a face).
JUDGED = ("ok", "no_face", "face_too_small")


def write_results(
    results: Sequence[Prediction], output: str, output_format: str | None = None
) -> str:
    """Writes CSV (one row per input; `faces` = faces of a photo, tracks of a video) or
    JSONL (the full record per input), by `output_format` or by extension; local or gs://."""
    with outputs.ResultsWriter(output, output_format) as writer:
        for result in results:
            writer.write(result.to_dict())
    return output


def faces_scored_text(scored: int, over_limit: int) -> str:
    """ "3 face(s)", or "16 of 60 faces scored (--max_faces)" when the limit left faces out."""
    if over_limit:
        return f"{scored} of {scored + over_limit} faces scored (--max_faces)"
    return f"{scored} face(s)"


def _detail(result: Prediction) -> str:
    record = result.to_dict()
    if result.status not in JUDGED:
        return f"error ({result.status}): {result.error}"
    texts = [_detail_text(result, record)]
    if "frames_judged" in record:
        texts.append(f"animated: frame {record['frames_judged']} judged")
    return "; ".join(text for text in texts if text)


def _detail_text(result: Prediction, record: dict) -> str:
    if result.kind == "photo":
        text = faces_scored_text(len(record["faces"]), record.get("faces_over_limit", 0))
        if record["too_small"]:
            text += f", {len(record['too_small'])} too small"
        return text if result.status == "ok" else f"{result.status}: {text}"
    if result.kind == "video":
        text = (
            f"{len(record['tracks'])} track(s); {record['frames_with_faces']} of "
            f"{record['frames_sampled']} frames with a face"
        )
        if result.error:
            text += f"; {result.status}: {result.error}"
        return text if result.status in ("ok", "truncated") else f"{result.status}: {text}"
    return ""


def format_score(p_fake: float | None, threshold: float | None = None) -> str:
    """`p_fake` with 4 decimals, or as many more (up to 9) as tell it from `threshold`.

    At 4 decimals a score just above and one just below a threshold of 0.5001
    both read 0.5001 next to opposite labels; the extra digits show which side
    each is on.
    """
    if p_fake is None:
        return "-"
    digits = 4
    while (
        threshold is not None
        and digits < 9
        and p_fake != threshold
        and f"{p_fake:.{digits}f}" == f"{threshold:.{digits}f}"
    ):
        digits += 1
    return f"{p_fake:.{digits}f}"


def format_table(results: Sequence[Prediction], threshold: float | None = None) -> str:
    """A fixed-width table for the terminal: path, kind, p_fake, label, detail (or the error).

    `threshold` (the one the labels were given at) widens a score that would
    otherwise print the same as the threshold (`format_score`).
    """
    width = max([len("path")] + [len(result.path) for result in results])
    scores = [format_score(result.p_fake, threshold) for result in results]
    score_width = max([7] + [len(score) for score in scores])
    lines = [f"{'path':<{width}}  {'kind':<5}  {'p_fake':>{score_width}}  {'label':<5}  detail"]
    for result, p_fake in zip(results, scores):
        lines.append(
            f"{result.path:<{width}}  {result.kind or '-':<5}  {p_fake:>{score_width}}  "
            f"{result.label or '-':<5}  {_detail(result)}".rstrip()
        )
    if threshold is not None:
        digits = max([4] + [len(score) - 2 for score in scores if score != "-"])
        lines.append(f"label: fake when p_fake >= {threshold:.{digits}f}")
    return "\n".join(lines)


def _write(path: str, data: bytes | str) -> str:
    with tf.io.gfile.GFile(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


def write_media(
    results: Sequence[Prediction],
    media_dir: str,
    threshold: float,
    annotate: bool,
    options: media.MediaOptions,
) -> list[tuple[str, str]]:
    """Per-video JSON and timeline PNG; annotated photos when `annotate`. Returns (input, file)."""
    written = []
    used: set[str] = set()
    for result in results:
        record = result.to_dict()
        if result.kind == "video" and "tracks" in record:
            tf.io.gfile.makedirs(media_dir)
            stem = media.output_name(result.path, "", used)
            json_path = _write(
                paths.join(media_dir, f"{stem}.video.json"), json.dumps(record, indent=1)
            )
            png = _write(
                paths.join(media_dir, f"{stem}.timeline.png"), drawing.timeline(record, threshold)
            )
            written += [(result.path, json_path), (result.path, png)]
        elif annotate and result.kind == "photo":
            tf.io.gfile.makedirs(media_dir)
            data = scoring.read_bytes(result.path, options.max_file_bytes)
            name = media.output_name(result.path, ".annotated.png", used)
            png = _write(paths.join(media_dir, name), annotated_photo(record, data, threshold))
            written.append((result.path, png))
    return written


def annotated_photo(record: dict, data: bytes, threshold: float) -> bytes:
    """The PNG of a photo's faces (`drawing.annotate_photo`) drawn on a copy of at most
    `drawing.MAX_DRAWN_SIDE` px, so a huge photo's full pixels are never decoded for it;
    the record's boxes stay in the original's coordinates (`width`, `height`)."""
    pixels = media.preview_pixels(data, drawing.MAX_DRAWN_SIDE)
    size = (record["width"], record["height"])
    return drawing.annotate_photo(pixels, record, threshold, size=size)


def explain_results(
    results: Sequence[Prediction],
    *,
    keras_model,
    explain_dir: str,
    image_size: int,
    threshold: float,
    layer_name: str | None,
    options: media.MediaOptions,
) -> list[tuple[str, str]]:
    """Grad-CAM PNGs: one per scored crop, one per scored face of a photo (`<name>.face<N>`)."""
    from trainer.inference import (
        explain as explain_lib,  # Lazy: Grad-CAM loads Keras and the full model.
    )

    model = (
        explain_lib.load_keras_model(keras_model, image_size=image_size)
        if isinstance(keras_model, str)
        else keras_model
    )
    explainer = explain_lib.GradCam(model, layer_name)
    tf.io.gfile.makedirs(explain_dir)
    used: set[str] = set()
    written = []
    size = media.crop_size(image_size)
    for result in results:
        if result.kind == "crop" and result.p_fake is not None:
            crops = [(os.path.basename(result.path), "", scoring.read_image(result.path))]
        elif result.kind == "photo" and result.p_fake is not None:
            _, pixels = media.decode_image(
                scoring.read_bytes(result.path), options.max_frame_pixels
            )
            crops = []
            for face in result.details["faces"]:
                points = [face["landmarks"][name] for name in faces_lib.LANDMARK_NAMES]
                jpeg = media.encode_jpeg(faces_lib.align(pixels, points, size))
                crops.append(
                    (
                        f"{os.path.basename(result.path)} face {face['face']}",
                        f".face{face['face']}",
                        jpeg,
                    )
                )
        else:
            continue
        for title, suffix, jpeg in crops:
            png, _, _ = explain_lib.explain_jpeg(
                explainer, jpeg, image_size=image_size, threshold=threshold, name=title
            )
            name = media.output_name(result.path, f"{suffix}.gradcam.png", used)
            written.append((result.path, _write(paths.join(explain_dir, name), png)))
    return written


def run(
    export_dir: str,
    inputs: Sequence[str],
    *,
    threshold: float | None = None,
    output: str | None = None,
    output_format: str | None = None,
    batch_size: int = 32,
    options: media.MediaOptions | None = None,
    annotate: bool = False,
    media_dir: str | None = None,
    explain: bool = False,
    explain_dir: str | None = None,
    keras_model: str | None = None,
    explain_layer: str | None = None,
    follow_outside_links: bool = False,
) -> dict:
    """Scores `inputs`; writes `output`, per-video JSON/timelines, annotations and Grad-CAMs.

    Per-video JSON and timelines go to `media_dir`, by default `<dir of output>/media`
    when `output` is given (or `./media` with `annotate`); a library call with neither
    writes no file. The command line always writes them (default `./media`).

    Every output and option is checked before the first file is scored, and each
    record reaches `output` as soon as it is made (`trainer.inference.outputs`):
    a failure late in a long run keeps what was done.

    Returns:
        {"results": [Prediction, ...] (rejects first, then the files in order),
         "media": [(input path, written file), ...] (video JSON/timelines, annotated photos),
         "explanations": [(input path, PNG path), ...], "threshold": float}.
    """
    options = options or media.MediaOptions()
    media_dir, explain_dir = _output_folders(output, annotate, media_dir, explain, explain_dir)
    writer = outputs.ResultsWriter(output, output_format) if output else None
    try:
        detector = Detector(export_dir, threshold=threshold)
        keras = None
        if explain:
            keras = _load_explain_model(keras_model, export_dir, detector, explain_layer)
        results = _score_and_write(
            detector, inputs, options, batch_size, follow_outside_links, writer
        )
    finally:
        if writer:
            writer.close()
            logging.info("Wrote %s", output)
    written = []
    if media_dir is not None:
        written = write_media(results, media_dir, detector.threshold, annotate, options)
    return {
        "results": results,
        "media": written,
        "explanations": _explain_scored(
            results, keras, explain_dir, detector, explain_layer, options
        ),
        "threshold": detector.threshold,
    }


def _explain_scored(results, keras, explain_dir, detector, explain_layer, options) -> list:
    """`run`'s Grad-CAMs: none without --explain (`keras` None) or without a scored file."""
    if keras is None or all(result.p_fake is None for result in results):
        return []
    return explain_results(
        results,
        keras_model=keras,
        explain_dir=explain_dir,
        image_size=detector.metadata.image_size,
        threshold=detector.threshold,
        layer_name=explain_layer,
        options=options,
    )


def _output_folders(
    output: str | None, annotate: bool, media_dir: str | None, explain: bool, explain_dir
) -> tuple[str | None, str | None]:
    """(media_dir, explain_dir) with their defaults (see `run`), each checked writable now."""
    default_dir = os.path.dirname(output) if output else os.getcwd()
    if media_dir is None and (output or annotate):
        media_dir = paths.join(default_dir, "media")
    explain_dir = (explain_dir or paths.join(default_dir, "explanations")) if explain else None
    for folder, flag in ((media_dir, "--media_dir"), (explain_dir, "--explain_dir")):
        if folder is not None:
            outputs.check_folder(folder, flag)
    return media_dir, explain_dir


def _score_and_write(detector, inputs, options, batch_size, follow_outside_links, writer):
    """Every input's Prediction, each written to `writer` (if any) as soon as it is made."""
    results = []
    for result in _score_inputs(detector, inputs, options, batch_size, follow_outside_links):
        results.append(result)
        if writer:
            writer.write(result.to_dict())
    return results


def _load_explain_model(
    keras_model: str | None, export_dir: str, detector: Detector, layer_name: str | None
):
    """The Keras model for --explain, loaded and checked (input size, layer) before any scoring."""
    from trainer.inference import explain as explain_lib  # Lazy: loads Keras and the model.

    path = keras_model or explain_lib.default_keras_model_path(export_dir)
    model = explain_lib.load_keras_model(path, image_size=detector.metadata.image_size)
    explain_lib.find_target_layer(model, layer_name)  # A wrong --explain_layer fails now.
    return model


def _score_inputs(
    detector: Detector,
    inputs: Sequence[str],
    options: media.MediaOptions,
    batch_size: int,
    follow_outside_links: bool,
) -> Iterator[Prediction]:
    """Every input's Prediction as it is made: the inputs that are not read first, then the
    files in order."""
    files, rejects = expand_inputs(inputs, follow_outside_links=follow_outside_links)
    counts = {"judged": 0, "verdicts": 0, "all": 0}
    for reject in rejects:
        logging.warning("Skipping %s: %s", reject.path, reject.error)
    for result in itertools.chain(rejects, media.score_files(detector, files, options, batch_size)):
        counts["all"] += 1
        counts["judged"] += result.status in JUDGED
        counts["verdicts"] += result.p_fake is not None
        yield result
    logging.info(
        "Judged %d of %d inputs at threshold %.4f (%d with a verdict); %d rejected.",
        counts["judged"],
        counts["all"],
        detector.threshold,
        counts["verdicts"],
        counts["all"] - counts["judged"],
    )
