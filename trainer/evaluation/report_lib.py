"""The evaluation report's layout: report.json, report.md, PNG plots, the printed summary.

`evaluate_lib` computes the figures; this module only lays them out, so a
report can be redrawn or summarised without a model or a dataset (`dfd-report`,
trainer/report.py). The Markdown per-class table has the layout of
scikit-learn's `classification_report`, the table the project's original
notebook printed, so the two compare line by line.
"""

from __future__ import annotations

from collections.abc import Mapping
import json

import matplotlib

matplotlib.use("Agg")  # Headless: reports are written on servers and in CI.
from matplotlib import pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from preprocessing import (
    paths,  # noqa: E402
    schema,  # noqa: E402
)
from trainer import metrics  # noqa: E402

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
PLOT_FILES = {
    "roc": "roc.png",
    "precision_recall": "precision_recall.png",
    "confusion_matrix": "confusion_matrix.png",
    "score_histogram": "score_histogram.png",
    "reliability": "reliability.png",
}
ROBUSTNESS_PLOT = "robustness.png"
# Figures named in the one-line headline, in order.
HEADLINE = (
    ("accuracy", "accuracy"),
    ("roc_auc", "ROC-AUC"),
    ("average_precision", "AP"),
    ("eer", "EER"),
    ("log_loss", "log loss"),
    ("ece", "ECE"),
)
_COLOURS = {schema.REAL: "tab:blue", schema.FAKE: "tab:red"}
# Markers of the robustness curves: equal values still show every line.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _format(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def text_colour(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour `rgba` (0-1 floats).

    Chosen by the cell's relative luminance (WCAG 2: linearised sRGB weighted
    0.2126/0.7152/0.0722); above 0.179 black has the higher contrast, below it white.
    A rule on the cell's *value* (such as `count > max / 2`) puts white text on pale
    cells whenever the colour map does not start at white.
    """
    channels = np.asarray(rgba[:3], dtype=np.float64)
    linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    luminance = float(np.dot([0.2126, 0.7152, 0.0722], linear))
    return "black" if luminance > 0.179 else "white"


def annotated_heatmap(axis, values, image, labels) -> None:
    """Writes `labels[i][j]` on each cell of `image` (an `imshow` result) in a readable colour."""
    for (row, column), value in np.ndenumerate(np.asarray(values, dtype=np.float64)):
        colour = "black" if np.isnan(value) else text_colour(image.cmap(image.norm(value)))
        axis.text(column, row, labels[row][column], ha="center", va="center", color=colour)


# ----------------------------------------------------------------------------------- plots


def _save(figure, path: str) -> str:
    figure.tight_layout()
    with tf.io.gfile.GFile(path, "wb") as f:
        figure.savefig(f, format="png", dpi=110)
    plt.close(figure)
    return path


def write_plots(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    plots_dir: str,
    *,
    title: str,
    num_bins: int = metrics.DEFAULT_CALIBRATION_BINS,
) -> dict[str, str]:
    """Draws the five report plots; returns {plot name: path}. Skips curves one class lacks."""
    tf.io.gfile.makedirs(plots_dir)
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    matrix = metrics.confusion_matrix(labels, scores, threshold)
    has_fakes = bool(np.any(labels == schema.FAKE))
    written = {}
    if has_fakes and np.any(labels == schema.REAL):
        written["roc"] = _save(
            roc_figure(labels, scores, threshold, matrix, title), _plot_path(plots_dir, "roc")
        )
    if has_fakes:
        written["precision_recall"] = _save(
            precision_recall_figure(labels, scores, threshold, matrix, title),
            _plot_path(plots_dir, "precision_recall"),
        )
    written["confusion_matrix"] = _save(
        confusion_figure(matrix, threshold), _plot_path(plots_dir, "confusion_matrix")
    )
    written["score_histogram"] = _save(
        histogram_figure(labels, scores, threshold, title),
        _plot_path(plots_dir, "score_histogram"),
    )
    written["reliability"] = _save(
        reliability_figure(labels, scores, num_bins), _plot_path(plots_dir, "reliability")
    )
    return written


def _plot_path(plots_dir: str, name: str) -> str:
    return paths.join(plots_dir, PLOT_FILES[name])


def _operating_point(matrix: np.ndarray) -> tuple[float, float]:
    """(false positive rate, true positive rate) of a confusion matrix (rows: true class)."""
    fake_total, real_total = max(matrix[1].sum(), 1), max(matrix[0].sum(), 1)
    return matrix[0, 1] / real_total, matrix[1, 1] / fake_total


def roc_figure(labels, scores, threshold: float, matrix: np.ndarray, title: str):
    """The ROC curve with its AUC, the chance diagonal and the threshold's point."""
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    figure, axis = plt.subplots(figsize=(4.8, 4.4))
    axis.plot(fpr, tpr, color="tab:red", label=f"ROC (AUC = {metrics.roc_auc(labels, scores):.4f})")
    axis.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    axis.plot(*_operating_point(matrix), "ko", label=f"threshold {threshold:.3f}")
    axis.set(
        xlabel="false positive rate (real called fake)",
        ylabel="true positive rate (fakes caught)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=f"ROC: {title}",
    )
    axis.legend(loc="lower right", fontsize=8)
    return figure


def precision_recall_figure(labels, scores, threshold: float, matrix: np.ndarray, title: str):
    """Precision against recall of the fake class, with the share of fakes as the baseline."""
    precision, recall, _ = metrics.precision_recall_curve(labels, scores)
    figure, axis = plt.subplots(figsize=(4.8, 4.4))
    axis.step(
        np.r_[0.0, recall],
        np.r_[precision[0], precision],
        where="pre",
        color="tab:red",
        label=f"AP = {metrics.average_precision(labels, scores):.4f}",
    )
    axis.axhline(
        np.mean(labels == schema.FAKE), linestyle=":", color="grey", label="share of fakes"
    )
    predicted_fake = matrix[:, 1].sum()
    if predicted_fake:
        axis.plot(
            _operating_point(matrix)[1],
            matrix[1, 1] / predicted_fake,
            "ko",
            label=f"threshold {threshold:.3f}",
        )
    axis.set(
        xlabel="recall (fakes caught)",
        ylabel="precision (called fake that are fake)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=f"Precision-recall: {title}",
    )
    axis.legend(loc="lower left", fontsize=8)
    return figure


def confusion_figure(matrix: np.ndarray, threshold: float):
    """The 2x2 confusion matrix at `threshold`, counts written in."""
    figure, axis = plt.subplots(figsize=(4.2, 3.8))
    image = axis.imshow(matrix, cmap="Blues", vmin=0)
    annotated_heatmap(axis, matrix, image, [[str(count) for count in row] for row in matrix])
    axis.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=schema.LABEL_NAMES,
        yticklabels=schema.LABEL_NAMES,
        xlabel="predicted",
        ylabel="true",
        title=f"Confusion at {threshold:.3f}",
    )
    return figure


def histogram_figure(labels, scores, threshold: float, title: str):
    """The p_fake histogram of each true class, and the threshold."""
    figure, axis = plt.subplots(figsize=(5.2, 3.8))
    bins = np.linspace(0, 1, 41)
    for label in (schema.REAL, schema.FAKE):
        chosen = scores[labels == label]
        if chosen.size:
            axis.hist(
                chosen,
                bins=bins,
                alpha=0.55,
                color=_COLOURS[label],
                label=f"{schema.LABEL_NAMES[label]} (n={chosen.size})",
            )
    axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    axis.set(xlabel="p_fake", ylabel="images", title=f"Scores by true class: {title}")
    axis.legend(fontsize=8)
    return figure


def reliability_figure(labels, scores, num_bins: int = metrics.DEFAULT_CALIBRATION_BINS):
    """The reliability diagram, with how many images each bin holds beneath it.

    Top: for each p_fake bin, the share of its images that are fake (bars, drawn
    over the bin) and the same share at the bin's average p_fake (dots); a
    calibrated detector's dots lie on the diagonal. Bottom: images per bin, so a
    bin of 3 images is not read like a bin of 3,000.
    """
    table = metrics.reliability(labels, scores, num_bins)
    filled = table.counts > 0
    centres = (table.bin_edges[:-1] + table.bin_edges[1:]) / 2
    width = 1 / num_bins
    figure, (axis, counts_axis) = plt.subplots(
        2, 1, figsize=(4.8, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    axis.bar(
        centres[filled],
        table.fraction_fake[filled],
        width=width,
        edgecolor="black",
        alpha=0.6,
        label="share of fakes in the bin",
    )
    axis.plot(
        table.mean_predicted[filled],
        table.fraction_fake[filled],
        "ko-",
        markersize=3,
        label="same share, at the bin's average p_fake",
    )
    axis.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ece = metrics.expected_calibration_error(labels, scores, num_bins)
    axis.set(
        ylabel="share of fakes",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=f"Reliability (ECE = {ece:.4f}, {int(table.counts.sum())} images)",
    )
    # Outside the axes (below the x axis): bars fill the plot wherever a legend could sit.
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.03), fontsize=7, frameon=False)
    counts_axis.bar(centres, table.counts, width=width, color="grey", edgecolor="black")
    top = max(int(table.counts.max()), 1)
    for centre, count in zip(centres, table.counts):
        counts_axis.text(
            centre, count + top * 0.03, str(int(count)), ha="center", va="bottom", fontsize=7
        )
    counts_axis.set(
        xlabel=f"predicted p_fake ({num_bins} bins of width {width:g})",
        ylabel="images",
        ylim=(0, top * 1.3),
    )
    return figure


def write_robustness_plot(robustness: Mapping, plots_dir: str, *, title: str) -> str:
    """One PNG: ROC-AUC, EER and accuracy at the fixed threshold against strength.

    One line per perturbation; x is the strength level (0 = the clean images,
    then each strength in the order given, mild to severe by default), since
    the perturbations' strengths have different units; the legend names them.
    """
    tf.io.gfile.makedirs(plots_dir)
    panels = (("roc_auc", "ROC-AUC"), ("eer", "EER"), ("accuracy", "accuracy at threshold"))
    figure, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    clean = robustness["clean"]
    most = max((len(p["levels"]) for p in robustness["perturbations"]), default=0)
    for axis, (key, name) in zip(axes, panels):
        for index, perturbation in enumerate(robustness["perturbations"]):
            levels = [0] + [level["level"] for level in perturbation["levels"]]
            values = [clean[key]] + [level[key] for level in perturbation["levels"]]
            values = [np.nan if value is None else value for value in values]
            strengths = " ".join(level["label"] for level in perturbation["levels"])
            axis.plot(
                levels,
                values,
                marker=_MARKERS[index % len(_MARKERS)],
                markersize=5,
                alpha=0.8,
                label=f"{perturbation['name']}: {strengths}",
            )
        axis.set(
            xlabel="strength level (0 = clean)",
            ylabel=name,
            ylim=(0, 1.01),
            xticks=range(most + 1),
            title=name,
        )
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(3, max(len(labels), 1)), fontsize=8)
    figure.suptitle(
        f"Robustness: {title}, threshold {robustness['threshold']:.3f} fixed "
        f"(seed {robustness['seed']})"
    )
    figure.tight_layout(rect=(0, 0.08 + 0.04 * ((len(labels) - 1) // 3), 1, 1))
    path = paths.join(plots_dir, ROBUSTNESS_PLOT)
    with tf.io.gfile.GFile(path, "wb") as f:
        figure.savefig(f, format="png", dpi=110)
    plt.close(figure)
    return path


# --------------------------------------------------------------------------------- writing


def classification_table(figures: Mapping) -> str:
    """The per-class table in scikit-learn's `classification_report` layout, as text."""
    per_class = figures["per_class"]
    total = figures["num_examples"]
    lines = [f"{'':>14}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>10}", ""]
    for name in schema.LABEL_NAMES:
        row = per_class[name]
        lines.append(
            f"{name:>14}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['f1']:>10.4f}"
            f"{row['support']:>10d}"
        )
    lines.append("")
    lines.append(f"{'accuracy':>14}{'':>10}{'':>10}{figures['accuracy']:>10.4f}{total:>10d}")
    for name, weights in (
        ("macro avg", [1, 1]),
        ("weighted avg", [per_class[n]["support"] for n in schema.LABEL_NAMES]),
    ):
        weights = np.asarray(weights, dtype=np.float64)
        weights = weights / weights.sum() if weights.sum() else weights
        averaged = [
            sum(w * per_class[n][key] for w, n in zip(weights, schema.LABEL_NAMES))
            for key in ("precision", "recall", "f1")
        ]
        lines.append(
            f"{name:>14}" + "".join(f"{value:>10.4f}" for value in averaged) + f"{total:>10d}"
        )
    return "\n".join(lines)


def headline(report: Mapping) -> str:
    """One line with the split, the threshold and its origin, and the main figures."""
    figures = report["metrics"]
    threshold = report["threshold"]
    parts = [f"{label} {_format(figures[key])}" for key, label in HEADLINE]
    return (
        f"{report['split']} ({figures['num_examples']} images) at threshold "
        f"{threshold['value']:.4f} ({threshold['description']}): " + ", ".join(parts)
    )


def markdown(report: Mapping) -> str:
    """report.md: the headline, every figure, the notebook's table and the plots."""
    lines = _markdown_figures(report) + _markdown_per_class(report["metrics"])
    chosen_on = report.get("threshold_split_metrics")
    if chosen_on:
        lines += [
            "",
            f"## {report['threshold']['chosen_on']} (where the threshold was chosen)",
            "",
            f"{chosen_on['num_examples']} images: ROC-AUC {_format(chosen_on['roc_auc'])}, "
            f"EER {_format(chosen_on['eer'])}, "
            f"accuracy {_format(chosen_on['accuracy'])} at the threshold.",
        ]
    if report.get("per_source"):
        lines += ["", "## Per source", ""] + source_table(report["per_source"])
    if report.get("video_metrics"):
        lines += ["", "## Per video", ""] + video_section(report)
    if report.get("robustness"):
        lines += ["", "## Robustness", ""] + robustness_table(report["robustness"])
        if "robustness" in report.get("plots", {}):
            lines += ["", f"![robustness]({PLOTS_DIR}/{ROBUSTNESS_PLOT})"]
    if report.get("plots"):
        lines += ["", "## Plots", ""]
        lines += [
            f"![{name}]({PLOTS_DIR}/{PLOT_FILES[name]})"
            for name in PLOT_FILES
            if name in report["plots"]
        ]
    return "\n".join(lines) + "\n"


def _markdown_figures(report: Mapping) -> list[str]:
    """report.md's title, what was evaluated at which threshold, and the table of figures."""
    figures = report["metrics"]
    threshold = report["threshold"]
    lines = [
        f"# Evaluation of `{report['export_dir']}`",
        "",
        f"Dataset `{report['dataset']['name']}` {report['dataset'].get('version') or ''} at "
        f"`{report['dataset']['data_dir']}`, split **{report['split']}**: "
        f"{figures['num_examples']} images ({figures['num_real']} real, "
        f"{figures['num_fake']} fake). Positive class: **fake** (label 1).",
        "",
        f"Threshold **{threshold['value']:.4f}**: {threshold['description']}."
        + (
            " Recorded in the export's detector.json, so `trainer.predict` uses it."
            if threshold.get("written_to_export")
            else ""
        ),
        "",
        "| metric | value |",
        "|---|---|",
    ]
    names = {
        "accuracy": "accuracy (at threshold)",
        "roc_auc": "ROC-AUC",
        "average_precision": "average precision",
        "eer": "equal error rate",
        "eer_threshold": "EER threshold (this split)",
        "log_loss": "log loss (nats)",
        "ece": f"ECE ({report.get('calibration_bins', 10)} bins)",
    }
    return lines + [f"| {label} | {_format(figures[key])} |" for key, label in names.items()]


def _markdown_per_class(figures: Mapping) -> list[str]:
    """The per-class table and the confusion matrix, as report.md sections."""
    lines = [
        "",
        "## Per class (the original notebook's table)",
        "",
        "```",
        classification_table(figures),
        "```",
        "",
        "## Confusion matrix (rows: true, columns: predicted)",
        "",
        "| | predicted real | predicted fake |",
        "|---|---|---|",
    ]
    matrix = figures["confusion_matrix"]
    return lines + [
        f"| true {name} | {matrix[i][0]} | {matrix[i][1]} |"
        for i, name in enumerate(schema.LABEL_NAMES)
    ]


def source_table(per_source: Mapping, unit: str = "images") -> list[str]:
    """Markdown rows of `metrics.by_group` figures, one per source; `unit` names what is counted."""
    lines = [
        "Accuracy is at the report's threshold. A source holding one class is ranked against "
        "every example of the other class in the split (`AUC against`).",
        "",
        f"| source | {unit} | real | fake | accuracy | mean p_fake | ROC-AUC | EER | AUC against |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in per_source.items():
        lines.append(
            f"| {name} | {row['num_examples']} | {row['num_real']} | {row['num_fake']} | "
            f"{_format(row['accuracy'])} | {_format(row['mean_p_fake'])} | "
            f"{_format(row['roc_auc'])} | {_format(row['eer'])} | {row['auc_against'] or 'n/a'} |"
        )
    return lines


def video_section(report: Mapping) -> list[str]:
    """The per-video figures: frames aggregated by `trainer.aggregation`."""
    videos = report["video_metrics"]
    lines = [
        f"{report['num_videos']} videos ({videos['num_real']} real, {videos['num_fake']} fake) "
        "from the frames above: a track scores the sigmoid of the mean logit of its top half "
        "of frames, a video its most suspicious track (`trainer.aggregation`).",
        "",
        "| metric | frames | videos |",
        "|---|---|---|",
    ]
    frames = report["metrics"]
    for key, label in (
        ("accuracy", "accuracy (at threshold)"),
        ("roc_auc", "ROC-AUC"),
        ("average_precision", "average precision"),
        ("eer", "equal error rate"),
    ):
        lines.append(f"| {label} | {_format(frames[key])} | {_format(videos[key])} |")
    if report.get("video_per_source"):
        lines += ["", "Per source, by video:", ""] + source_table(
            report["video_per_source"], "videos"
        )[2:]
    return lines


def robustness_table(robustness: Mapping) -> list[str]:
    """Markdown rows: one per perturbation and strength, clean first."""
    clean = robustness["clean"]
    video = "video_roc_auc" in clean
    header = "| perturbation | strength | ROC-AUC | EER | accuracy |" + (
        " video ROC-AUC |" if video else ""
    )
    lines = [
        f"Split **{robustness['split']}** re-scored under each perturbation at the fixed "
        f"threshold {robustness['threshold']:.4f} (not re-chosen); random perturbations "
        f"seeded with {robustness['seed']}.",
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
    ]

    def row(name, strength, figures):
        cells = [figures["roc_auc"], figures["eer"], figures["accuracy"]]
        cells += [figures.get("video_roc_auc")] if video else []
        return f"| {name} | {strength} | " + " | ".join(_format(c) for c in cells) + " |"

    lines.append(row("none", "clean", clean))
    for perturbation in robustness["perturbations"]:
        for level in perturbation["levels"]:
            lines.append(row(perturbation["name"], level["label"], level))
    lines += [""] + [
        f"- `{p['name']}`: {p['models']}; strength = {p['strength_name']}."
        for p in robustness["perturbations"]
    ]
    return lines


def write_report(report: Mapping, report_dir: str) -> dict[str, str]:
    """Writes report.json and report.md to `report_dir`; returns their paths."""
    tf.io.gfile.makedirs(report_dir)
    written = {
        "json": paths.join(report_dir, REPORT_JSON),
        "markdown": paths.join(report_dir, REPORT_MD),
    }
    with tf.io.gfile.GFile(written["json"], "w") as f:
        f.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    with tf.io.gfile.GFile(written["markdown"], "w") as f:
        f.write(markdown(report))
    return written


def read_report(report_dir: str) -> dict:
    """Reads report.json; FileNotFoundError names the folder and how to make one."""
    path = paths.join(report_dir, REPORT_JSON)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path} not found: run `python -m trainer.evaluate --report_dir={report_dir} ...`."
        )
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def summary(report: Mapping, report_dir: str) -> str:
    """What a person wants at the end of a run: the headline and where everything is."""
    lines = [
        headline(report),
        "",
        "per class:",
        classification_table(report["metrics"]),
        *_summary_extras(report),
        "",
        f"report:         {paths.join(report_dir, REPORT_MD)}",
        f"                {paths.join(report_dir, REPORT_JSON)}",
    ]
    if report.get("scores_csv"):
        lines.append(f"scores:         {report['scores_csv']}")
    if report.get("video_scores_csv"):
        lines.append(f"                {report['video_scores_csv']}")
    plots = report.get("plots", {})
    names = [name for name in PLOT_FILES if name in plots] + [
        name for name in plots if name not in PLOT_FILES
    ]
    for index, name in enumerate(names):
        lines.append(f"{'plots:' if index == 0 else '':<16}{plots[name]}")
    lines.append(f"exported model: {report['export_dir']}")
    return "\n".join(lines)


def _summary_extras(report: Mapping) -> list[str]:
    """Lines for what some datasets and runs add: videos, sources, robustness."""
    lines = []
    videos = report.get("video_metrics")
    if videos:
        parts = [f"{label} {_format(videos[key])}" for key, label in HEADLINE[:4]]
        lines += ["", f"videos ({report['num_videos']}): " + ", ".join(parts)]
    for title, key in (("per source", "per_source"), ("per source, by video", "video_per_source")):
        if report.get(key):
            lines += ["", f"{title} (accuracy at threshold, ROC-AUC):"]
            lines += [
                f"  {name:<20} n={row['num_examples']:<6} accuracy {_format(row['accuracy'])}  "
                f"ROC-AUC {_format(row['roc_auc'])}"
                for name, row in report[key].items()
            ]
    robust = report.get("robustness")
    if robust:
        clean = robust["clean"]
        lines += [
            "",
            f"robustness (ROC-AUC / accuracy at the fixed threshold; clean "
            f"{_format(clean['roc_auc'])} / {_format(clean['accuracy'])}):",
        ]
        for perturbation in robust["perturbations"]:
            cells = "  ".join(
                f"{level['label']} {_format(level['roc_auc'], 3)}/{_format(level['accuracy'], 3)}"
                for level in perturbation["levels"]
            )
            lines.append(f"  {perturbation['name']:<8} {cells}")
    return lines
