"""The work behind `dfd-evaluate` (trainer/evaluate.py, whose docstring is the user's guide).

`run` scores a split with the exported SavedModel (`score_split`: the stored
JPEG bytes, undecoded, exactly as a client would send them), chooses the
threshold on another split, computes every figure (`split_figures`, with video
figures from `trainer.aggregation` when frames carry a `video_id`), optionally
re-scores under perturbations (`robustness`), and writes the report through
`report_lib`. The cross-dataset matrix calls `score_split` and `split_figures`
too, so its cells are this module's figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import csv
import dataclasses
import functools
import io
import time

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from preprocessing import cli, paths, schema
from trainer import aggregation, data, export, metrics
from trainer.evaluation import perturbations, report_lib

SCORES_CSV = "scores.csv"
VIDEO_SCORES_CSV = "video_scores.csv"
_RULE_NAMES = {"eer": "EER", "max_f1": "max-F1"}


@dataclasses.dataclass(frozen=True)
class SplitScores:
    """Every image of a split with its label and score, in the split's order.

    `sources`, `video_ids` and `track_ids` are filled when the dataset has the
    matching feature (`schema.SOURCE`, `schema.VIDEO_ID`, `schema.TRACK_ID`), else None.
    """

    ids: list[str]
    labels: np.ndarray
    scores: np.ndarray
    sources: list[str] | None = None
    video_ids: list[str] | None = None
    track_ids: np.ndarray | None = None


def _texts(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _perturb_map(perturb: Callable[[bytes], bytes]):
    """A tf.data map applying `perturb` to each example's JPEG bytes (Pillow, off the graph)."""

    def call(jpeg) -> bytes:
        return perturb(bytes(jpeg))

    def apply(example):
        image = tf.numpy_function(call, [example[schema.IMAGE]], tf.string, stateful=False)
        return {**example, schema.IMAGE: tf.ensure_shape(image, [])}

    return apply


def score_split(
    builder: tfds.core.DatasetBuilder,
    split: str,
    scorer,
    *,
    batch_size: int = 64,
    max_examples: int = 0,
    perturb: Callable[[bytes], bytes] | None = None,
) -> SplitScores:
    """Scores one split with the serving function on the stored JPEG bytes.

    The bytes go to the SavedModel undecoded (`SkipDecoding`), exactly as a
    client would send them, so the served decode-and-crop is what is measured.

    Args:
        perturb: JPEG bytes -> JPEG bytes, applied to every image before scoring
            (in parallel, order kept); None scores the stored bytes.

    Raises:
        ValueError: naming the split and listing those that exist.
    """
    if split not in builder.info.splits:
        raise ValueError(
            f"Split {split!r} is not in {builder.info.full_name} at {builder.data_dir}; "
            f"it has {sorted(builder.info.splits.keys())}."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    features = set(builder.info.features.keys())
    optional = [key for key in (schema.SOURCE, schema.VIDEO_ID, schema.TRACK_ID) if key in features]
    dataset = builder.as_dataset(
        split=split, shuffle_files=False, decoders={schema.IMAGE: tfds.decode.SkipDecoding()}
    )
    if max_examples > 0:
        dataset = dataset.take(max_examples)
    if perturb is not None:
        dataset = dataset.map(
            _perturb_map(perturb), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    ids, labels, scores = [], [], []
    columns: dict[str, list] = {key: [] for key in optional}
    started = time.monotonic()
    for batch in dataset:
        outputs = scorer(**{export.INPUT_NAME: batch[schema.IMAGE]})
        scores.append(outputs[export.OUTPUT_NAME].numpy().reshape(-1))
        labels.append(batch[schema.LABEL].numpy())
        ids.extend(_texts(batch[schema.ID].numpy()))
        for key in optional:
            columns[key].extend(batch[key].numpy().tolist())
        if len(ids) % (batch_size * 20) == 0:
            logging.info("%s: scored %d images", split, len(ids))
    if not ids:
        raise ValueError(f"Split {split!r} of {builder.info.full_name} holds no examples.")
    logging.info("%s: scored %d images in %.1f s", split, len(ids), time.monotonic() - started)
    return SplitScores(
        ids,
        np.concatenate(labels).astype(np.int64),
        np.concatenate(scores).astype(np.float64),
        sources=_texts(columns[schema.SOURCE]) if schema.SOURCE in columns else None,
        video_ids=_texts(columns[schema.VIDEO_ID]) if schema.VIDEO_ID in columns else None,
        track_ids=(
            np.asarray(columns[schema.TRACK_ID], dtype=np.int64)
            if schema.TRACK_ID in columns
            else None
        ),
    )


def aggregate_videos(frames: SplitScores) -> SplitScores:
    """One score per video, from its frames' scores, by the rules of `trainer.aggregation`.

    Frames are grouped by (video_id, track_id) into tracks (a dataset without
    `track_id` has one track per video); a track scores `track_score` of its
    frames, a video `media_score` of its tracks. Videos keep the order in which
    their first frame appears.

    Returns:
        SplitScores whose `ids` are the video ids (one entry per video).

    Raises:
        ValueError: when the frames carry no video ids, or one video's frames
            disagree on the label or the source (a broken dataset).
    """
    if frames.video_ids is None:
        raise ValueError("These scores carry no video ids: the dataset has no video_id feature.")
    tracks = (
        frames.track_ids if frames.track_ids is not None else np.zeros(len(frames.ids), np.int64)
    )
    grouped: dict[str, dict[int, list[float]]] = {}
    labels: dict[str, set[int]] = {}
    sources: dict[str, set[str]] = {}
    for index, video in enumerate(frames.video_ids):
        grouped.setdefault(video, {}).setdefault(int(tracks[index]), []).append(
            float(frames.scores[index])
        )
        labels.setdefault(video, set()).add(int(frames.labels[index]))
        if frames.sources is not None:
            sources.setdefault(video, set()).add(frames.sources[index])
    for video in grouped:
        if len(labels[video]) > 1:
            raise ValueError(
                f"Video {video!r} has frames labelled both real and fake; a video has one "
                "label. Fix: rebuild the dataset (its video ids are not unique)."
            )
        if len(sources.get(video, ())) > 1:
            raise ValueError(
                f"Video {video!r} has frames from sources {sorted(sources[video])}; a video has "
                "one source. Fix: rebuild the dataset (its video ids are not unique)."
            )
    videos = list(grouped)
    return SplitScores(
        ids=videos,
        labels=np.asarray([labels[v].pop() for v in videos], dtype=np.int64),
        scores=np.asarray(
            [
                aggregation.media_score(
                    aggregation.track_score(track) for track in grouped[v].values()
                )
                for v in videos
            ],
            dtype=np.float64,
        ),
        sources=[sources[v].pop() for v in videos] if frames.sources is not None else None,
    )


def split_figures(
    scores: SplitScores,
    threshold: float,
    calibration_bins: int = metrics.DEFAULT_CALIBRATION_BINS,
) -> dict:
    """Every figure of one split at one threshold: what report.json and the matrix hold.

    Returns:
        {"metrics": frame-level `metrics.summarise`, "per_source": per source or None,
         "num_videos", "video_metrics", "video_per_source": the same per video, or None
         when the dataset has no video ids}.
    """
    figures = {
        "metrics": metrics.summarise(scores.labels, scores.scores, threshold, calibration_bins),
        "per_source": (
            metrics.by_group(scores.labels, scores.scores, scores.sources, threshold)
            if scores.sources is not None
            else None
        ),
        "num_videos": None,
        "video_metrics": None,
        "video_per_source": None,
    }
    if scores.video_ids is not None:
        videos = aggregate_videos(scores)
        figures["num_videos"] = len(videos.ids)
        figures["video_metrics"] = metrics.summarise(
            videos.labels, videos.scores, threshold, calibration_bins
        )
        if videos.sources is not None:
            figures["video_per_source"] = metrics.by_group(
                videos.labels, videos.scores, videos.sources, threshold
            )
    return figures


def _robust_figures(scores: SplitScores, threshold: float) -> dict:
    """What the robustness report follows: threshold-free figures and accuracy at `threshold`."""
    eer, _ = metrics.equal_error_rate(scores.labels, scores.scores)
    figures = {
        "num_examples": len(scores.ids),
        "roc_auc": metrics.roc_auc(scores.labels, scores.scores),
        "eer": eer,
        "accuracy": metrics.accuracy(scores.labels, scores.scores, threshold),
    }
    if scores.video_ids is not None:
        videos = aggregate_videos(scores)
        figures["video_roc_auc"] = metrics.roc_auc(videos.labels, videos.scores)
        figures["video_accuracy"] = metrics.accuracy(videos.labels, videos.scores, threshold)
    return metrics.json_ready(figures)


def robustness(
    builder: tfds.core.DatasetBuilder,
    split: str,
    scorer,
    threshold: float,
    chosen: Sequence[tuple[perturbations.Perturbation, tuple]],
    *,
    clean: SplitScores,
    seed: int = 0,
    batch_size: int = 64,
    max_examples: int = 0,
) -> dict:
    """Re-scores `split` under each perturbation and strength at the fixed `threshold`.

    The threshold is not re-chosen per perturbation: a deployed detector meets
    degraded media with the threshold it shipped with, so accuracy shows what a
    user would see, while AUC and EER show how much separability is left.

    Args:
        chosen: from `perturbations.parse_specs`.
        clean: the split's scores without perturbation (level 0 of every curve).
        seed: seeds the random perturbations (with each image's bytes).

    Returns:
        {"split", "threshold", "seed", "clean": figures, "perturbations": [{"name",
         "models", "strength_name", "levels": [{"level", "strength", "label",
         "num_examples", "roc_auc", "eer", "accuracy"}, ...]}, ...]}.
    """
    result = {
        "split": split,
        "threshold": float(threshold),
        "seed": int(seed),
        "clean": _robust_figures(clean, threshold),
        "perturbations": [],
    }
    for perturbation, strengths in chosen:
        levels = []
        for level, strength in enumerate(strengths, start=1):
            started = time.monotonic()
            label = perturbation.format_strength(strength)
            try:
                scored = score_split(
                    builder,
                    split,
                    scorer,
                    batch_size=batch_size,
                    max_examples=max_examples,
                    perturb=functools.partial(perturbation, strength=strength, seed=seed),
                )
            except tf.errors.OpError as error:
                raise RuntimeError(
                    f"Perturbation {perturbation.name} {label} failed on {split}: "
                    f"{cli.one_line(error)[:500]}"
                ) from error
            figures = _robust_figures(scored, threshold)
            levels.append(
                {
                    "level": level,
                    "strength": perturbation.strength_to_json(strength),
                    "label": label,
                    **figures,
                }
            )
            logging.info(
                "robustness %s %s: AUC %s, EER %s, accuracy %.4f (%.1f s)",
                perturbation.name,
                label,
                figures["roc_auc"],
                figures["eer"],
                figures["accuracy"],
                time.monotonic() - started,
            )
        result["perturbations"].append(
            {
                "name": perturbation.name,
                "models": perturbation.models,
                "strength_name": perturbation.strength_name,
                "levels": levels,
            }
        )
    return result


def write_scores(scores: SplitScores, path: str) -> None:
    """One row per image, so any other figure can be computed later without the model.

    Columns: id, label, p_fake, then source / video_id / track_id when the dataset has them.
    """
    extra = {
        "source": scores.sources,
        "video_id": scores.video_ids,
        "track_id": None if scores.track_ids is None else scores.track_ids.tolist(),
    }
    extra = {name: values for name, values in extra.items() if values is not None}
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["id", "label", "p_fake", *extra])
    for index, (identifier, label, score) in enumerate(
        zip(scores.ids, scores.labels, scores.scores)
    ):
        writer.writerow(
            [
                identifier,
                schema.LABEL_NAMES[label],
                f"{score:.6f}",
                *(values[index] for values in extra.values()),
            ]
        )
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text.getvalue())


def run(
    *,
    export_dir: str,
    data_dir: str,
    report_dir: str,
    dataset: str = schema.DATASET_NAME,
    split: str = "test",
    threshold: str = "eer",
    threshold_split: str = "validation",
    write_threshold: bool = False,
    batch_size: int = 64,
    max_examples: int = 0,
    calibration_bins: int = metrics.DEFAULT_CALIBRATION_BINS,
    perturbation_specs: Sequence[str] = (),
    perturbation_seed: int = 0,
) -> dict:
    """Scores the splits, chooses the threshold, writes the report; returns report.json's content.

    Args:
        perturbation_specs: `--perturbations` values (see `perturbations.parse_specs`);
            empty: no robustness report.
        perturbation_seed: seeds the random perturbations.

    Raises:
        ValueError: for a bad threshold rule, split or perturbation, naming it.
        FileNotFoundError: when the export or the dataset is missing.
    """
    chosen_perturbations = perturbations.parse_specs(perturbation_specs)  # Bad specs fail first.
    paths.ensure_writable(report_dir)
    metadata = export.read_metadata(export_dir)
    scorer = export.load_scorer(export_dir)
    builder = data.load_builder(data_dir, dataset)

    rule = str(threshold).strip().lower()
    chosen_on = None
    if rule in metrics.THRESHOLD_RULES:
        if threshold_split == split:
            logging.warning(
                "--threshold_split=%s equals --split: the thresholded figures are optimistic.",
                split,
            )
        chosen_on = score_split(
            builder, threshold_split, scorer, batch_size=batch_size, max_examples=max_examples
        )
        value, how = metrics.choose_threshold(chosen_on.labels, chosen_on.scores, rule)
        description = f"{_RULE_NAMES[how]} on {threshold_split}"
    else:
        value, how = metrics.choose_threshold([], [], rule)  # A number: no scores needed.
        description = "fixed by --threshold"
    evaluated = (
        chosen_on
        if threshold_split == split and chosen_on is not None
        else score_split(builder, split, scorer, batch_size=batch_size, max_examples=max_examples)
    )
    figures = split_figures(evaluated, value, calibration_bins)

    plots_dir = paths.join(report_dir, report_lib.PLOTS_DIR)
    plots = report_lib.write_plots(
        evaluated.labels,
        evaluated.scores,
        value,
        plots_dir,
        title=f"{dataset} {split}",
        num_bins=calibration_bins,
    )
    write_scores(evaluated, paths.join(report_dir, SCORES_CSV))
    video_scores_csv = None
    if evaluated.video_ids is not None:
        video_scores_csv = paths.join(report_dir, VIDEO_SCORES_CSV)
        write_scores(aggregate_videos(evaluated), video_scores_csv)
    robust = None
    if chosen_perturbations:
        robust = robustness(
            builder,
            split,
            scorer,
            value,
            chosen_perturbations,
            clean=evaluated,
            seed=perturbation_seed,
            batch_size=batch_size,
            max_examples=max_examples,
        )
        plots["robustness"] = report_lib.write_robustness_plot(
            robust, plots_dir, title=f"{dataset} {split}"
        )
    if write_threshold:
        export.write_metadata(
            export_dir,
            dataclasses.replace(metadata, threshold=float(value), threshold_source=description),
        )
        logging.info(
            "Recorded threshold %.4f (%s) in %s",
            value,
            description,
            paths.join(export_dir, export.METADATA_FILENAME),
        )
    report = {
        "export_dir": export_dir,
        "dataset": {"name": dataset, "data_dir": data_dir, "version": str(builder.info.version)},
        "split": split,
        "threshold": {
            "value": float(value),
            "rule": how,
            "chosen_on": threshold_split if chosen_on else None,
            "description": description,
            "written_to_export": bool(write_threshold),
            "export_threshold_before": metadata.threshold,
        },
        **figures,
        "threshold_split_metrics": (
            metrics.summarise(chosen_on.labels, chosen_on.scores, value, calibration_bins)
            if chosen_on is not None
            else None
        ),
        "robustness": robust,
        "calibration_bins": calibration_bins,
        "max_examples": max_examples or None,
        "plots": plots,
        "scores_csv": paths.join(report_dir, SCORES_CSV),
        "video_scores_csv": video_scores_csv,
        "image_size": metadata.image_size,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    written = report_lib.write_report(report, report_dir)
    logging.info("Wrote %s and %s", written["json"], written["markdown"])
    return report
