"""The work behind `dfd-matrix` (trainer/matrix.py): every export on every dataset split.

Every export, dataset and split is opened before anything is scored, so a typo
fails in seconds. Each cell is `evaluate_lib.score_split` + `split_figures` on
the exported SavedModel, so it equals what `dfd-evaluate` reports for that
export, dataset and split; accuracy is at each export's own threshold.
`run` writes matrix.json, matrix.md, matrix.png and scores/; `summary` is the
text the command prints.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import json
import os
import re
import time

from absl import logging
import matplotlib

matplotlib.use("Agg")  # Headless: reports are written on servers and in CI.
from matplotlib import pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from preprocessing import cli, paths, schema  # noqa: E402
from trainer import data, export  # noqa: E402
from trainer.evaluation import evaluate_lib, report_lib  # noqa: E402

MATRIX_JSON = "matrix.json"
MATRIX_MD = "matrix.md"
MATRIX_PNG = "matrix.png"
SCORES_DIR = "scores"
# Cell figures shown as matrices: (key in a cell, title, higher is better).
FRAME_METRICS = (("roc_auc", "frame ROC-AUC", True), ("eer", "frame EER", False))
VIDEO_METRICS = (("video_roc_auc", "video ROC-AUC", True), ("video_eer", "video EER", False))
_DATASET_KEYS = ("label", "data_dir", "dataset", "split")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    label: str
    export_dir: str


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    label: str
    data_dir: str
    dataset: str
    split: str


def _split_label(text: str) -> tuple[str | None, str]:
    """'LABEL=PATH' -> (LABEL, PATH); a PATH alone -> (None, PATH)."""
    label, separator, rest = text.partition("=")
    if separator and label and "/" not in label and rest:
        return label.strip(), rest.strip()
    return None, text.strip()


def parse_model(text: str) -> ModelSpec:
    """`[LABEL=]PATH`: PATH is an export (holds detector.json) or a model_dir holding export/.

    The label defaults to the model_dir's folder name (the export's own name when
    the export is not a trainer's `<model_dir>/export`).

    Raises:
        FileNotFoundError: when PATH is neither, naming it.
    """
    label, path = _split_label(text)
    path = cli.expand_user(path).rstrip("/")
    if not path:
        raise ValueError(f"--model={text!r} names no path.")
    if tf.io.gfile.exists(paths.join(path, export.METADATA_FILENAME)):
        export_dir = path
    elif tf.io.gfile.exists(paths.join(path, export.EXPORT_SUBDIR, export.METADATA_FILENAME)):
        export_dir = paths.join(path, export.EXPORT_SUBDIR)
    else:
        raise FileNotFoundError(
            f"--model={text}: {path} is neither an export (no {export.METADATA_FILENAME}) nor "
            f"a model_dir holding {export.EXPORT_SUBDIR}/. Fix: pass the trainer's --model_dir "
            "or its export/ folder."
        )
    if label is None:
        # <model_dir>/export is named after its model_dir; any other export after itself.
        is_trainer_layout = os.path.basename(export_dir) == export.EXPORT_SUBDIR
        folder = os.path.dirname(export_dir) if is_trainer_layout else export_dir
        label = os.path.basename(folder) or folder
    return ModelSpec(label, export_dir)


def parse_dataset(text: str, split: str = "test") -> DatasetSpec:
    """`[LABEL=]DATA_DIR`, or `label=L,data_dir=D,dataset=NAME,split=S` (keys in any order).

    `dataset` is the TFDS name (default `real_and_fake_faces`, with `/config` if
    the builder has configs), `split` defaults to `--split`, the label to the
    data_dir's folder name.

    Raises:
        ValueError: for an unknown key or a missing data_dir, naming the spec.
    """
    if re.search(r"(^|,)\s*data_dir\s*=", text):
        values = {}
        for part in text.split(","):
            key, separator, value = part.partition("=")
            key = key.strip()
            if not separator or key not in _DATASET_KEYS:
                raise ValueError(
                    f"--dataset={text}: {part!r} is not KEY=VALUE with KEY one of "
                    f"{list(_DATASET_KEYS)}."
                )
            values[key] = value.strip()
    else:
        label, data_dir = _split_label(text)
        values = {"data_dir": data_dir, **({"label": label} if label else {})}
    data_dir = cli.expand_user(values.get("data_dir", "")).rstrip("/")
    if not data_dir:
        raise ValueError(f"--dataset={text} names no data_dir.")
    return DatasetSpec(
        label=values.get("label") or os.path.basename(data_dir) or data_dir,
        data_dir=data_dir,
        dataset=values.get("dataset") or schema.DATASET_NAME,
        split=values.get("split") or split,
    )


def _check_unique(labels: Sequence[str], what: str) -> None:
    repeated = sorted({label for label in labels if list(labels).count(label) > 1})
    if repeated:
        raise ValueError(
            f"Two {what}s are labelled {repeated}; give each its own label with LABEL=... ."
        )


def _holds(data_dir: str) -> str:
    """' It holds: a, b; ...' naming the dataset folders under `data_dir`, or ''."""
    if not tf.io.gfile.isdir(data_dir):
        return ""
    names = sorted(
        name.rstrip("/")
        for name in tf.io.gfile.listdir(data_dir)
        if name.rstrip("/") != "downloads" and tf.io.gfile.isdir(paths.join(data_dir, name))
    )
    if not names:
        return ""
    return f" {data_dir} holds: {', '.join(names)}; name one with dataset=NAME in --dataset."


def _file_part(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "x"


def cell(scores: evaluate_lib.SplitScores, threshold: float) -> dict:
    """One matrix cell from one export's scores of one split (dfd-evaluate's own figures)."""
    figures = evaluate_lib.split_figures(scores, threshold)
    frames = figures["metrics"]
    videos = figures["video_metrics"]
    return {
        "num_examples": frames["num_examples"],
        "roc_auc": frames["roc_auc"],
        "eer": frames["eer"],
        "accuracy": frames["accuracy"],
        "threshold": float(threshold),
        "num_videos": figures["num_videos"],
        "video_roc_auc": videos["roc_auc"] if videos else None,
        "video_eer": videos["eer"] if videos else None,
        "video_accuracy": videos["accuracy"] if videos else None,
    }


def run(
    models: Sequence[ModelSpec],
    datasets: Sequence[DatasetSpec],
    output_dir: str,
    *,
    batch_size: int = 64,
    max_examples: int = 0,
) -> dict:
    """Scores every model on every dataset split; writes and returns matrix.json's content.

    Every export, dataset and split is opened before anything is scored, so a
    typo fails in seconds, not after the first model's hours.

    Raises:
        ValueError: no model or dataset, repeated labels, a missing split.
        FileNotFoundError: a missing export or dataset.
    """
    if not models or not datasets:
        raise ValueError("Pass at least one --model and one --dataset.")
    _check_unique([m.label for m in models], "model")
    _check_unique([d.label for d in datasets], "dataset")
    metadata = {m.label: export.read_metadata(m.export_dir) for m in models}
    for model in models[1:]:
        # A foreign SavedModel as the second model fails now, not after the first's scoring
        # (the first is checked when it is loaded to score, next).
        export.load_export(model.export_dir)
    builders = _open_datasets(datasets)
    paths.ensure_writable(output_dir)
    scores_dir = paths.join(output_dir, SCORES_DIR)
    tf.io.gfile.makedirs(scores_dir)
    cells = _score_cells(models, datasets, builders, metadata, scores_dir, batch_size, max_examples)
    result = _result(models, datasets, builders, metadata, cells)
    result["scores_dir"] = scores_dir
    result["created_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["heatmap"] = write_heatmap(result, paths.join(output_dir, MATRIX_PNG))
    with tf.io.gfile.GFile(paths.join(output_dir, MATRIX_JSON), "w") as f:
        f.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    with tf.io.gfile.GFile(paths.join(output_dir, MATRIX_MD), "w") as f:
        f.write(markdown(result))
    return result


def _open_datasets(datasets: Sequence[DatasetSpec]) -> dict[str, object]:
    """{label: builder} of every dataset, each split checked to exist.

    Raises:
        FileNotFoundError: a missing dataset, naming the dataset folders its data_dir holds.
        ValueError: a missing split, listing the splits that exist.
    """
    builders = {}
    for spec in datasets:
        try:
            builder = data.load_builder(spec.data_dir, spec.dataset)
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"--dataset {spec.label}: {error}{_holds(spec.data_dir)}"
            ) from None
        data.num_examples(builder, spec.split)  # ValueError listing the splits.
        builders[spec.label] = builder
    return builders


def _score_cells(
    models: Sequence[ModelSpec],
    datasets: Sequence[DatasetSpec],
    builders: dict,
    metadata: dict,
    scores_dir: str,
    batch_size: int,
    max_examples: int,
) -> dict[str, dict[str, dict]]:
    """{model label: {dataset label: cell}}, each model's scores written to `scores_dir`."""
    cells: dict[str, dict[str, dict]] = {}
    for model in models:
        scorer = export.load_scorer(model.export_dir)
        threshold = metadata[model.label].threshold
        cells[model.label] = {}
        for spec in datasets:
            started = time.monotonic()
            scores = evaluate_lib.score_split(
                builders[spec.label],
                spec.split,
                scorer,
                batch_size=batch_size,
                max_examples=max_examples,
            )
            evaluate_lib.write_scores(
                scores,
                paths.join(scores_dir, f"{_file_part(model.label)}__{_file_part(spec.label)}.csv"),
            )
            cells[model.label][spec.label] = cell(scores, threshold)
            logging.info(
                "%s on %s (%s): ROC-AUC %s, EER %s (%.1f s)",
                model.label,
                spec.label,
                spec.split,
                cells[model.label][spec.label]["roc_auc"],
                cells[model.label][spec.label]["eer"],
                time.monotonic() - started,
            )
    return cells


def _result(
    models: Sequence[ModelSpec],
    datasets: Sequence[DatasetSpec],
    builders: dict,
    metadata: dict,
    cells: dict[str, dict[str, dict]],
) -> dict:
    """matrix.json's models, datasets, cells and the cells' figures as matrices."""
    has_videos = any(
        cells[m.label][d.label]["num_videos"] is not None for m in models for d in datasets
    )
    shown = FRAME_METRICS + (VIDEO_METRICS if has_videos else ())
    return {
        "models": [
            {
                "label": m.label,
                "export_dir": m.export_dir,
                "threshold": metadata[m.label].threshold,
                "threshold_source": metadata[m.label].threshold_source,
            }
            for m in models
        ],
        "datasets": [
            {
                **dataclasses.asdict(d),
                "version": str(builders[d.label].info.version),
                "has_videos": any(
                    cells[m.label][d.label]["num_videos"] is not None for m in models
                ),
            }
            for d in datasets
        ],
        "cells": cells,
        # The same figures as row-major matrices: [model][dataset], in the order above.
        "matrices": {
            key: [[cells[m.label][d.label][key] for d in datasets] for m in models]
            for key, _, _ in shown
        },
    }


def _titles(result: dict) -> list[tuple[str, str, bool]]:
    return [entry for entry in FRAME_METRICS + VIDEO_METRICS if entry[0] in result["matrices"]]


def write_heatmap(result: dict, path: str) -> str:
    """matrix.png: one heat map per figure (rows: models, columns: datasets), values written in.

    Green is good in every panel (high AUC, low EER); the scale is fixed to
    [0, 1] so two matrices compare by colour. A cell without a figure (video
    figures of an image dataset) is grey and reads n/a.
    """
    models = [m["label"] for m in result["models"]]
    datasets = [f"{d['label']}\n({d['split']})" for d in result["datasets"]]
    panels = _titles(result)
    rows = (len(panels) + 1) // 2  # Frame figures on the first row, video ones on the second.
    width = 1.0 * len(datasets) + 2.4
    height = 0.6 * len(models) + 2.0
    figure, axes = plt.subplots(rows, 2, figsize=(2 * width, rows * height), squeeze=False)
    for axis, (key, title, higher_is_better) in zip(axes.flat, panels):
        values = np.array(
            [[np.nan if v is None else v for v in row] for row in result["matrices"][key]],
            dtype=np.float64,
        )
        colours = plt.get_cmap("RdYlGn" if higher_is_better else "RdYlGn_r").copy()
        colours.set_bad("lightgrey")
        image = axis.imshow(np.ma.masked_invalid(values), cmap=colours, vmin=0.0, vmax=1.0)
        labels = [["n/a" if np.isnan(v) else f"{v:.3f}" for v in row] for row in values]
        report_lib.annotated_heatmap(axis, values, image, labels)
        axis.set(
            xticks=range(len(datasets)),
            yticks=range(len(models)),
            title=title + (" (higher is better)" if higher_is_better else " (lower is better)"),
        )
        axis.set_xticklabels(datasets, fontsize=8)
        axis.set_yticklabels(models, fontsize=8)
    figure.tight_layout()
    with tf.io.gfile.GFile(path, "wb") as f:
        figure.savefig(f, format="png", dpi=110)
    plt.close(figure)
    return path


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def markdown(result: dict) -> str:
    """matrix.md: what was compared, then one table per figure."""
    datasets = result["datasets"]
    lines = [
        "# Cross-dataset matrix",
        "",
        "Rows: models (exports); columns: datasets. Each cell is what `dfd-evaluate` reports "
        "for that export on that split. Video figures aggregate frames per track and per video "
        "(`trainer.aggregation`); n/a where a dataset has no `video_id`.",
        "",
        "| model | export | threshold (detector.json) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {m['label']} | `{m['export_dir']}` | {m['threshold']:.4f} ({m['threshold_source']}) |"
        for m in result["models"]
    ]
    lines += ["", "| dataset | data_dir | TFDS name | version | split |", "|---|---|---|---|---|"]
    lines += [
        f"| {d['label']} | `{d['data_dir']}` | {d['dataset']} | {d['version']} | {d['split']} |"
        for d in datasets
    ]
    first_row = next(iter(result["cells"].values()))
    lines += [
        "",
        "Images per dataset: "
        + ", ".join(f"{d['label']} {first_row[d['label']]['num_examples']}" for d in datasets),
    ]
    for key, title, higher_is_better in _titles(result):
        lines += [
            "",
            f"## {title} ({'higher' if higher_is_better else 'lower'} is better)",
            "",
            "| model | " + " | ".join(d["label"] for d in datasets) + " |",
            "|---" * (len(datasets) + 1) + "|",
        ]
        for model, row in zip(result["models"], result["matrices"][key]):
            lines.append(f"| {model['label']} | " + " | ".join(_fmt(v) for v in row) + " |")
    lines += ["", f"![matrix]({MATRIX_PNG})"]
    return "\n".join(lines) + "\n"


def summary(result: dict, output_dir: str) -> str:
    """The matrices as text, then where the files are."""
    datasets = [d["label"] for d in result["datasets"]]
    width = max([len(m["label"]) for m in result["models"]] + [5]) + 2
    lines = []
    for key, title, _ in _titles(result):
        lines += [title, " " * width + "".join(f"{d[:14]:>16}" for d in datasets)]
        for model, row in zip(result["models"], result["matrices"][key]):
            lines.append(f"{model['label']:<{width}}" + "".join(f"{_fmt(v):>16}" for v in row))
        lines.append("")
    lines += [
        f"matrix:  {paths.join(output_dir, MATRIX_MD)}",
        f"         {paths.join(output_dir, MATRIX_JSON)}",
        f"heat map: {result['heatmap']}",
        f"scores:  {result['scores_dir']}",
    ]
    return "\n".join(lines)
