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
import math
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
    ids, labels, scores = [], [], []
    columns: dict[str, list] = {key: [] for key in optional}
    started = time.monotonic()
    for batch in _scoring_dataset(builder, split, batch_size, max_examples, perturb):
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
    return _split_scores(ids, labels, scores, columns)


def _scoring_dataset(
    builder: tfds.core.DatasetBuilder,
    split: str,
    batch_size: int,
    max_examples: int,
    perturb: Callable[[bytes], bytes] | None,
) -> tf.data.Dataset:
    """Batches of `split`'s examples in file order, JPEG bytes undecoded (perturbed if asked)."""
    dataset = builder.as_dataset(
        split=split, shuffle_files=False, decoders={schema.IMAGE: tfds.decode.SkipDecoding()}
    )
    if max_examples > 0:
        dataset = dataset.take(max_examples)
    if perturb is not None:
        dataset = dataset.map(
            _perturb_map(perturb), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _split_scores(ids: list[str], labels: list, scores: list, columns: dict[str, list]):
    """The `SplitScores` of the batches' labels and scores and the optional columns read."""
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


@dataclasses.dataclass(frozen=True)
class SplitScorer:
    """`score_split` bound to one dataset, one exported scorer and one batch size."""

    builder: tfds.core.DatasetBuilder
    scorer: Callable
    batch_size: int = 64
    max_examples: int = 0

    def __call__(self, split: str, perturb: Callable[[bytes], bytes] | None = None):
        return score_split(
            self.builder,
            split,
            self.scorer,
            batch_size=self.batch_size,
            max_examples=self.max_examples,
            perturb=perturb,
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
    score = SplitScorer(builder, scorer, batch_size=batch_size, max_examples=max_examples)
    return _robustness(score, split, threshold, chosen, clean, seed)


def _robustness(
    score: SplitScorer,
    split: str,
    threshold: float,
    chosen: Sequence[tuple[perturbations.Perturbation, tuple]],
    clean: SplitScores,
    seed: int,
) -> dict:
    """`robustness`, scoring with `score`."""
    result = {
        "split": split,
        "threshold": float(threshold),
        "seed": int(seed),
        "clean": _robust_figures(clean, threshold),
        "perturbations": [],
    }
    for perturbation, strengths in chosen:
        levels = [
            _robust_level(score, split, threshold, perturbation, level, strength, seed)
            for level, strength in enumerate(strengths, start=1)
        ]
        result["perturbations"].append(
            {
                "name": perturbation.name,
                "models": perturbation.models,
                "strength_name": perturbation.strength_name,
                "levels": levels,
            }
        )
    return result


def _robust_level(
    score: SplitScorer,
    split: str,
    threshold: float,
    perturbation: perturbations.Perturbation,
    level: int,
    strength,
    seed: int,
) -> dict:
    """One point of a robustness curve: `split` scored under `perturbation` at `strength`.

    Raises:
        RuntimeError: when scoring fails under the perturbation (naming it and the split).
    """
    started = time.monotonic()
    label = perturbation.format_strength(strength)
    try:
        scored = score(split, perturb=functools.partial(perturbation, strength=strength, seed=seed))
    except tf.errors.OpError as error:
        raise RuntimeError(
            f"Perturbation {perturbation.name} {label} failed on {split}: "
            f"{cli.one_line(error)[:500]}"
        ) from error
    figures = _robust_figures(scored, threshold)
    logging.info(
        "robustness %s %s: AUC %s, EER %s, accuracy %.4f (%.1f s)",
        perturbation.name,
        label,
        figures["roc_auc"],
        figures["eer"],
        figures["accuracy"],
        time.monotonic() - started,
    )
    return {
        "level": level,
        "strength": perturbation.strength_to_json(strength),
        "label": label,
        **figures,
    }


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
    metadata, builder, score = _open(export_dir, data_dir, dataset, batch_size, max_examples)
    chosen = _choose_threshold(threshold, threshold_split, score, split=split)
    evaluated = chosen.scores if chosen.split == split else score(split)
    title = f"{dataset} {split}"
    report = {
        "export_dir": export_dir,
        "dataset": {"name": dataset, "data_dir": data_dir, "version": str(builder.info.version)},
        "split": split,
        "threshold": _threshold_section(chosen, metadata, written=write_threshold),
        **split_figures(evaluated, chosen.value, calibration_bins),
        "threshold_split_metrics": _threshold_split_metrics(chosen, calibration_bins),
        "robustness": None,
        "calibration_bins": calibration_bins,
        "max_examples": max_examples or None,
        **_write_split_outputs(evaluated, chosen.value, report_dir, title, calibration_bins),
        "image_size": metadata.image_size,
    }
    if chosen_perturbations:
        report["robustness"] = _robustness(
            score, split, chosen.value, chosen_perturbations, evaluated, perturbation_seed
        )
        report["plots"]["robustness"] = report_lib.write_robustness_plot(
            report["robustness"], paths.join(report_dir, report_lib.PLOTS_DIR), title=title
        )
    if write_threshold:
        _record_threshold(export_dir, metadata, chosen)
    report["created_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    written = report_lib.write_report(report, report_dir)
    logging.info("Wrote %s and %s", written["json"], written["markdown"])
    return report


def _open(
    export_dir: str, data_dir: str, dataset: str, batch_size: int, max_examples: int
) -> tuple[export.DetectorMetadata, tfds.core.DatasetBuilder, SplitScorer]:
    """(the export's metadata, the dataset's builder, a scorer of its splits).

    Everything `run` reads is opened before the first image is scored, so a
    wrong path fails in seconds.
    """
    metadata = export.read_metadata(export_dir)
    scorer = export.load_scorer(export_dir)
    builder = data.load_builder(data_dir, dataset)
    return metadata, builder, SplitScorer(builder, scorer, batch_size, max_examples)


@dataclasses.dataclass(frozen=True)
class _Threshold:
    """The threshold an evaluation applies, how it was chosen, and on which scores.

    Attributes:
        value: the threshold on p_fake.
        rule: how `metrics.choose_threshold` chose it: "eer", "max_f1" or "fixed".
        description: for people, e.g. "EER on validation" or "fixed by --threshold".
        split: the split it was chosen on (None for a number given by --threshold).
        scores: that split's scores (None for a number).
    """

    value: float
    rule: str
    description: str
    split: str | None = None
    scores: SplitScores | None = None


def _choose_threshold(
    threshold: str, threshold_split: str, score: Callable[[str], SplitScores], *, split: str
) -> _Threshold:
    """Applies `--threshold`: a rule scores `threshold_split`; a number needs no scores.

    Raises:
        ValueError: for a threshold that is neither a rule nor a number in [0, 1], or a
            rule the threshold split cannot support (naming it).
    """
    rule = str(threshold).strip().lower()
    if rule not in metrics.THRESHOLD_RULES:
        value, how = metrics.choose_threshold([], [], rule)  # A number: no scores needed.
        return _Threshold(value, how, "fixed by --threshold")
    if threshold_split == split:
        logging.warning(
            "--threshold_split=%s equals --split: the thresholded figures are optimistic.",
            split,
        )
    chosen_on = score(threshold_split)
    value, how = metrics.choose_threshold(chosen_on.labels, chosen_on.scores, rule)
    return _Threshold(
        value, how, f"{_RULE_NAMES[how]} on {threshold_split}", threshold_split, chosen_on
    )


def _threshold_section(
    chosen: _Threshold, metadata: export.DetectorMetadata, *, written: bool
) -> dict:
    """report.json's "threshold": the value, how and where it was chosen, the export's own."""
    return {
        "value": float(chosen.value),
        "rule": chosen.rule,
        "chosen_on": chosen.split,
        "description": chosen.description,
        "written_to_export": bool(written),
        "export_threshold_before": metadata.threshold,
    }


def _threshold_split_metrics(chosen: _Threshold, calibration_bins: int) -> dict | None:
    """Every figure of the split the threshold was chosen on; None for a fixed threshold."""
    if chosen.scores is None:
        return None
    return metrics.summarise(
        chosen.scores.labels, chosen.scores.scores, chosen.value, calibration_bins
    )


def _write_split_outputs(
    scores: SplitScores, threshold: float, report_dir: str, title: str, calibration_bins: int
) -> dict:
    """The report's plots and scores CSVs: {"plots", "scores_csv", "video_scores_csv"}."""
    plots = report_lib.write_plots(
        scores.labels,
        scores.scores,
        threshold,
        paths.join(report_dir, report_lib.PLOTS_DIR),
        title=title,
        num_bins=calibration_bins,
    )
    write_scores(scores, paths.join(report_dir, SCORES_CSV))
    video_scores_csv = None
    if scores.video_ids is not None:
        video_scores_csv = paths.join(report_dir, VIDEO_SCORES_CSV)
        write_scores(aggregate_videos(scores), video_scores_csv)
    return {
        "plots": plots,
        "scores_csv": paths.join(report_dir, SCORES_CSV),
        "video_scores_csv": video_scores_csv,
    }


def _record_threshold(export_dir: str, metadata: export.DetectorMetadata, chosen: _Threshold):
    """Writes the chosen threshold into the export's detector.json (`--write_threshold`).

    A threshold chosen on the validation split also refreshes the model card's
    validation AUC and EER from the same scores, so the card and the threshold agree.
    """
    card = {}
    if chosen.split == "validation" and chosen.scores is not None:
        labels, scores = chosen.scores.labels, chosen.scores.scores
        auc, (eer, _) = metrics.roc_auc(labels, scores), metrics.equal_error_rate(labels, scores)
        card = {
            "validation_auc": None if math.isnan(auc) else auc,
            "validation_eer": None if math.isnan(eer) else eer,
        }
    export.write_metadata(
        export_dir,
        dataclasses.replace(
            metadata, threshold=float(chosen.value), threshold_source=chosen.description, **card
        ),
    )
    logging.info(
        "Recorded threshold %.4f (%s) in %s",
        chosen.value,
        chosen.description,
        paths.join(export_dir, export.METADATA_FILENAME),
    )
