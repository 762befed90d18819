"""Scores image files (face crops, photos) and videos with an exported detector: `dfd-predict`.

    python -m trainer.predict --export_dir=demo_out/model/export face1.jpg photos/ clip.mp4
    python -m trainer.predict --export_dir=... --output=scores.jsonl --annotate photos/ videos/
    python -m trainer.predict --export_dir=... --explain --explain_dir=cams/ group_photo.jpg

Inputs are files, folders (searched recursively; regular files only, each real
file once, no link out of the folder unless --follow_outside_links), globs,
local or `gs://`. What happens to each (`trainer.media` has the rules):

- a **crop** (an aligned face like the training images) is scored as given;
- a **photo** has its faces found (MTCNN) and cropped like the training data;
  each face gets box, landmarks, detection confidence, `p_fake` and label, and
  the photo is as fake as its most suspicious face (`trainer.aggregation`). A
  photo without a usable face is reported as `no_face` / `face_too_small`,
  never scored as a whole frame;
- a **video** (mp4, mov, webm, avi, mkv) is sampled (`--max_frames`, or
  `--frames_per_second`; never more than 256 frames), its faces are linked
  into tracks, each track scored from its most suspicious frames and the video
  from its most suspicious track. `<media_dir>/<name>.video.json` holds the
  tracks, per-frame scores and time stamps; `<name>.timeline.png` plots them.

`--faces=auto` (default) tells crops from photos: a square image in which the
face detector finds no usable face, or one face whose crop square covers most of
the image, is a crop; other images are photos. `--faces=detect` treats every
image as a photo, `--faces=none` every image as a crop (the old behaviour).

Each label is taken at the threshold recorded in the export's `detector.json`
(`trainer.evaluate --write_threshold` calibrates it). A file that cannot be
read, is not an image or video, or breaks while decoding is reported on its own
line with a status and the reason, and never stops the rest of the batch.
Only the exported SavedModel is needed to score; `--explain` (Grad-CAM) also
needs the Keras model (`model.keras` beside the export).
"""

from __future__ import annotations

from collections.abc import Sequence
import csv
import io
import json
import os
import sys

from absl import app, flags, logging
import tensorflow as tf

from preprocessing import cli, paths
from preprocessing import faces as faces_lib
from preprocessing import video as video_lib
from trainer import drawing, media, scoring
from trainer.scoring import Detector, Prediction, expand_inputs

OUTPUT_FORMATS = ("csv", "jsonl")
CSV_COLUMNS = ("path", "kind", "status", "p_fake", "label", "faces", "error")
# Statuses of inputs that were read and judged (with or without a face).
JUDGED = ("ok", "no_face", "face_too_small")


def _parts(record: dict) -> int | str:
    if record.get("kind") == "photo":
        return len(record.get("faces", ()))
    if record.get("kind") == "video":
        return len(record.get("tracks", ()))
    return ""


def write_results(
    results: Sequence[Prediction], output: str, output_format: str | None = None
) -> str:
    """Writes CSV (one row per input; `faces` = faces of a photo, tracks of a video) or
    JSONL (the full record per input), by `output_format` or by extension; local or gs://."""
    output_format = (output_format or os.path.splitext(output)[1].lstrip(".")).lower()
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(
            f"Cannot tell the format of --output={output!r}: use a .csv or .jsonl name, "
            f"or --output_format={'|'.join(OUTPUT_FORMATS)}."
        )
    parent = os.path.dirname(output)
    if parent:
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(output, "w") as f:
        if output_format == "jsonl":
            for result in results:
                f.write(json.dumps(result.to_dict()) + "\n")
        else:
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
            writer.writeheader()
            for result in results:
                record = result.to_dict()
                writer.writerow({**record, "faces": _parts(record)})
            f.write(text.getvalue())
    return output


def _detail(result: Prediction) -> str:
    record = result.to_dict()
    if result.status not in JUDGED:
        return f"error ({result.status}): {result.error}"
    if result.kind == "photo":
        text = f"{len(record['faces'])} face(s)"
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
            _, pixels = media.decode_image(
                scoring.read_bytes(result.path), options.max_frame_pixels
            )
            name = media.output_name(result.path, ".annotated.png", used)
            png = _write(
                paths.join(media_dir, name), drawing.annotate_photo(pixels, record, threshold)
            )
            written.append((result.path, png))
    return written


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
    from trainer import explain as explain_lib  # Lazy: Grad-CAM loads Keras and the full model.

    model = explain_lib.load_keras_model(keras_model)
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

    Returns:
        {"results": [Prediction, ...] (rejects first, then the files in order),
         "media": [(input path, written file), ...] (video JSON/timelines, annotated photos),
         "explanations": [(input path, PNG path), ...], "threshold": float}.
    """
    options = options or media.MediaOptions()
    detector = Detector(export_dir, threshold=threshold)
    files, rejects = expand_inputs(inputs, follow_outside_links=follow_outside_links)
    for reject in rejects:
        logging.warning("Skipping %s: %s", reject.path, reject.error)
    results = rejects + list(media.score_files(detector, files, options, batch_size))
    judged = [result for result in results if result.status in JUDGED]
    logging.info(
        "Judged %d of %d inputs at threshold %.4f (%d with a verdict); %d rejected.",
        len(judged),
        len(results),
        detector.threshold,
        sum(result.p_fake is not None for result in results),
        len(results) - len(judged),
    )
    default_dir = os.path.dirname(output) if output else os.getcwd()
    if output:
        write_results(results, output, output_format)
        logging.info("Wrote %s", output)
    if media_dir is None and (output or annotate):
        media_dir = paths.join(default_dir, "media")
    written = []
    if media_dir is not None:
        written = write_media(results, media_dir, detector.threshold, annotate, options)
    explanations = []
    if explain and any(result.p_fake is not None for result in results):
        from trainer import explain as explain_lib

        explanations = explain_results(
            results,
            keras_model=keras_model or explain_lib.default_keras_model_path(export_dir),
            explain_dir=explain_dir or paths.join(default_dir, "explanations"),
            image_size=detector.metadata.image_size,
            threshold=detector.threshold,
            layer_name=explain_layer,
            options=options,
        )
    return {
        "results": results,
        "media": written,
        "explanations": explanations,
        "threshold": detector.threshold,
    }


# ---------------------------------------------------------------------------- command line

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command's flags; called by `run_main`, so importing this module as a
    library (tests, other tools) defines none and cannot collide with other commands."""
    flags.DEFINE_string(
        "export_dir", None, "Exported detector: <model_dir>/export written by trainer.task."
    )
    flags.DEFINE_float(
        "threshold", None, "Override the threshold recorded in the export's detector.json."
    )
    flags.DEFINE_string(
        "output", None, "Also write the results here (.csv or .jsonl; local or gs://)."
    )
    flags.DEFINE_enum(
        "output_format",
        None,
        list(OUTPUT_FORMATS),
        "Format of --output when its name does not say.",
    )
    flags.DEFINE_integer("batch_size", 32, "Images (face crops) scored per model call.")
    flags.DEFINE_enum(
        "faces",
        "auto",
        list(media.FACE_MODES),
        "auto: square images with no face or one face filling them are crops, other images "
        "are photos; detect: every image is a photo (faces found and cropped); none: every "
        "image is scored as given.",
    )
    flags.DEFINE_integer(
        "min_face_size",
        faces_lib.DEFAULT_MIN_FACE_SIZE,
        "Faces smaller than this (box's shorter side, pixels) are reported, not scored.",
    )
    flags.DEFINE_float(
        "min_face_confidence",
        faces_lib.DEFAULT_MIN_CONFIDENCE,
        "MTCNN confidence below which a candidate is not a face.",
    )
    flags.DEFINE_integer(
        "max_faces", faces_lib.DEFAULT_MAX_FACES, "At most this many faces (the largest) per image."
    )
    flags.DEFINE_float(
        "frames_per_second", None, "Sample videos at this rate (default: --max_frames spread)."
    )
    flags.DEFINE_integer(
        "max_frames",
        None,
        f"Frames sampled per video (default {video_lib.DEFAULT_MAX_FRAMES}, spread over the "
        f"video; at most {video_lib.HARD_CAP}, the hard cap).",
    )
    flags.DEFINE_integer(
        "max_frame_pixels",
        video_lib.DEFAULT_MAX_PIXELS,
        "Photos and video frames with more pixels are rejected (huge_frame).",
    )
    flags.DEFINE_boolean(
        "annotate", False, "Write <media_dir>/<name>.annotated.png: each photo with its faces."
    )
    flags.DEFINE_string(
        "media_dir",
        None,
        "Where per-video JSON and timeline PNGs and --annotate PNGs go; "
        "default <output dir or cwd>/media.",
    )
    flags.DEFINE_boolean(
        "follow_outside_links",
        False,
        "Follow symbolic links in input folders that point outside the folder.",
    )
    flags.DEFINE_boolean(
        "explain",
        False,
        "Write a Grad-CAM overlay PNG per scored crop and per scored face of a photo "
        "(needs model.keras).",
    )
    flags.DEFINE_string(
        "explain_dir",
        None,
        "Where --explain writes its PNGs; default <output dir or cwd>/explanations.",
    )
    flags.DEFINE_string(
        "keras_model", None, "Keras model for --explain; default model.keras beside the export."
    )
    flags.DEFINE_string(
        "explain_layer",
        None,
        "Layer Grad-CAM reads; default the backbone's last 4-D output "
        "(conv5_block3_out for ResNet50).",
    )


def media_options(flag_values: flags.FlagValues, **more) -> media.MediaOptions:
    """The face and video flags `dfd-predict` and `dfd-batch-score` share, as MediaOptions.

    Each tool defines the flags next to its own `main`; this reads them the same
    way in both (`more`: options only one tool has, e.g. batch scoring's chunk size).
    """
    return media.MediaOptions(
        faces=flag_values.faces,
        min_face_size=flag_values.min_face_size,
        min_confidence=flag_values.min_face_confidence,
        max_faces=flag_values.max_faces,
        frames_per_second=flag_values.frames_per_second,
        max_frames=flag_values.max_frames,
        max_frame_pixels=flag_values.max_frame_pixels,
        **more,
    )


def main(argv: Sequence[str]) -> int:
    inputs = list(argv[1:])
    if not FLAGS.export_dir:
        raise app.UsageError(
            "--export_dir is required: the <model_dir>/export folder written by trainer.task."
        )
    if not inputs:
        raise app.UsageError(
            "Give at least one image or video file, folder or glob after the flags."
        )
    options = media_options(FLAGS)
    outcome = run(
        FLAGS.export_dir,
        inputs,
        threshold=FLAGS.threshold,
        output=FLAGS.output,
        output_format=FLAGS.output_format,
        batch_size=FLAGS.batch_size,
        options=options,
        annotate=FLAGS.annotate,
        media_dir=FLAGS.media_dir or (None if FLAGS.output else os.path.join(os.getcwd(), "media")),
        explain=FLAGS.explain,
        explain_dir=FLAGS.explain_dir,
        keras_model=FLAGS.keras_model,
        explain_layer=FLAGS.explain_layer,
        follow_outside_links=FLAGS.follow_outside_links,
    )
    print(format_table(outcome["results"], outcome["threshold"]))
    for path, written in outcome["media"]:
        what = next(
            label
            for suffix, label in (
                (".timeline.png", "timeline"),
                (".video.json", "video JSON"),
                (".annotated.png", "annotated"),
                ("", "written"),
            )
            if written.endswith(suffix)
        )
        print(f"{what}: {path} -> {written}")
    for path, png in outcome["explanations"]:
        print(f"Grad-CAM: {path} -> {png}")
    # Non-zero only when nothing at all could be judged: rejects are reported, not fatal.
    return 0 if any(result.status in JUDGED for result in outcome["results"]) else 1


def run_main():
    define_flags()
    cli.run(main, module=sys.modules[__name__], prog="dfd-predict")


if __name__ == "__main__":
    run_main()
