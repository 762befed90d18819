"""Binary-detector metrics in plain numpy, with "fake" (label 1) as the positive class.

Why not `keras.metrics` or scikit-learn: the evaluation tool scores a whole split
once and needs exact, threshold-free figures (ROC-AUC from ranks, average
precision as scikit-learn defines it, the equal error rate) plus the curves to
plot, with no training-time dependency. scikit-learn stays a test-only
dependency, used as the independent reference these functions are checked
against.

Every function takes `labels` (0 = real, 1 = fake) and `scores` (p_fake in
[0, 1], or any score where larger means "more likely fake").
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from preprocessing import schema

# Bins of the reliability diagram and of the expected calibration error.
DEFAULT_CALIBRATION_BINS = 10
# Log loss clips probabilities away from 0 and 1 so one confident mistake is
# large but finite.
LOG_LOSS_EPSILON = 1e-15
THRESHOLD_RULES = ("eer", "max_f1")


def _as_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Validates and converts inputs; raises ValueError naming what is wrong."""
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels has {labels.size} values but scores has {scores.size}.")
    if labels.size == 0:
        raise ValueError("No examples: labels and scores are empty.")
    bad = set(np.unique(labels).tolist()) - {schema.REAL, schema.FAKE}
    if bad:
        raise ValueError(
            f"Labels must be {schema.REAL} (real) or {schema.FAKE} (fake); got {sorted(bad)}."
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            f"Scores must be finite; got {int(np.sum(~np.isfinite(scores)))} NaN/inf values."
        )
    return labels.astype(np.int64), scores


def _has_both_classes(labels: np.ndarray) -> bool:
    return bool(np.any(labels == schema.FAKE) and np.any(labels == schema.REAL))


def predict_labels(scores, threshold: float) -> np.ndarray:
    """The decision rule used everywhere: fake when `score >= threshold`."""
    return (np.asarray(scores, dtype=np.float64) >= threshold).astype(np.int64)


def label_name(score: float, threshold: float) -> str:
    """The class name `predict_labels` gives one score ("real" or "fake"), for tables and CSVs."""
    return schema.LABEL_NAMES[int(predict_labels([score], threshold)[0])]


def accuracy(labels, scores, threshold: float) -> float:
    labels, scores = _as_arrays(labels, scores)
    return float(np.mean(predict_labels(scores, threshold) == labels))


def confusion_matrix(labels, scores, threshold: float) -> np.ndarray:
    """2x2 counts: rows are the true class, columns the predicted class, in label-id order."""
    labels, scores = _as_arrays(labels, scores)
    predicted = predict_labels(scores, threshold)
    matrix = np.zeros((2, 2), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def per_class_report(labels, scores, threshold: float) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class, as the original notebook's table.

    A class that is never predicted has precision 0 (scikit-learn's
    `zero_division=0`), so the figures stay numbers.
    """
    matrix = confusion_matrix(labels, scores, threshold)
    report = {}
    for index, name in enumerate(schema.LABEL_NAMES):
        true_positive = matrix[index, index]
        predicted = matrix[:, index].sum()
        support = matrix[index, :].sum()
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(support),
        }
    return report


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score, highest threshold first.

    Returns:
        (fpr, tpr, thresholds); the first point is (0, 0) at threshold +inf.

    Raises:
        ValueError: when only one class is present (the curve is undefined).
    """
    labels, scores = _as_arrays(labels, scores)
    if not _has_both_classes(labels):
        raise ValueError("ROC needs both classes; the labels hold only one.")
    true_positives, false_positives, thresholds = _cumulative_counts(labels, scores)
    tpr = np.concatenate([[0.0], true_positives / true_positives[-1]])
    fpr = np.concatenate([[0.0], false_positives / false_positives[-1]])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


def _cumulative_counts(labels: np.ndarray, scores: np.ndarray):
    """TP and FP counts when predicting fake at each distinct score, descending."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    # The last index of each run of equal scores: ties are decided together.
    last_of_run = np.r_[np.nonzero(np.diff(sorted_scores))[0], sorted_scores.size - 1]
    true_positives = np.cumsum(sorted_labels)[last_of_run].astype(np.float64)
    false_positives = (last_of_run + 1) - true_positives
    return true_positives, false_positives, sorted_scores[last_of_run]


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    labels, scores = _as_arrays(labels, scores)
    if not _has_both_classes(labels):
        return math.nan
    fpr, tpr, _ = roc_curve(labels, scores)
    # Trapezoid rule by hand: np.trapezoid needs numpy >= 2, setup.py allows 1.26.
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def precision_recall_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score, highest threshold first.

    Returns:
        (precision, recall, thresholds), all the same length.
    """
    labels, scores = _as_arrays(labels, scores)
    if not np.any(labels == schema.FAKE):
        raise ValueError("Precision-recall needs at least one fake example; the labels hold none.")
    true_positives, false_positives, thresholds = _cumulative_counts(labels, scores)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / true_positives[-1]
    return precision, recall, thresholds


def average_precision(labels, scores) -> float:
    """Sum over thresholds of (recall step) x precision, as scikit-learn defines it (no interp.)."""
    labels, scores = _as_arrays(labels, scores)
    if not np.any(labels == schema.FAKE):
        return math.nan
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def equal_error_rate(labels, scores) -> tuple[float, float]:
    """The rate where false positives and false negatives are equally likely.

    The EER is read where the ROC curve crosses FPR = FNR, linearly
    interpolated between its two neighbouring points; the threshold returned
    is the distinct score whose operating point is closest to that crossing.

    Returns:
        (eer, threshold); (NaN, NaN) when only one class is present.
    """
    labels, scores = _as_arrays(labels, scores)
    if not _has_both_classes(labels):
        return math.nan, math.nan
    fpr, tpr, thresholds = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    gap = fnr - fpr  # Starts at 1 (threshold +inf) and falls to -1 (lowest threshold).
    crossing = int(np.argmax(gap <= 0))
    if gap[crossing] == 0:
        eer = fpr[crossing]
    else:
        # gap[crossing - 1] > 0 > gap[crossing]: interpolate both rates to gap = 0.
        weight = gap[crossing - 1] / (gap[crossing - 1] - gap[crossing])
        eer = fpr[crossing - 1] + weight * (fpr[crossing] - fpr[crossing - 1])
    # The real operating point (never the +inf sentinel) with the smallest worse-of-both
    # error; among equals (up to rounding) the one where both errors are closest.
    worse = np.maximum(fpr, fnr)[1:]
    candidates = np.nonzero(worse <= worse.min() + 1e-12)[0]
    best = 1 + int(candidates[np.argmin(np.abs(gap[1:][candidates]))])
    return float(eer), float(thresholds[best])


def log_loss(labels, scores) -> float:
    """Mean binary cross-entropy of p_fake, in nats; scores must be probabilities."""
    labels, scores = _as_arrays(labels, scores)
    if np.any((scores < 0) | (scores > 1)):
        raise ValueError("log_loss needs probabilities in [0, 1]; got scores outside it.")
    p = np.clip(scores, LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


@dataclasses.dataclass(frozen=True)
class Reliability:
    """Per-bin calibration figures for the reliability diagram (empty bins have count 0)."""

    bin_edges: np.ndarray
    mean_predicted: np.ndarray  # Mean p_fake in the bin (NaN when empty).
    fraction_fake: np.ndarray  # Observed fraction of fakes in the bin (NaN when empty).
    counts: np.ndarray


def reliability(labels, scores, num_bins: int = DEFAULT_CALIBRATION_BINS) -> Reliability:
    """Bins p_fake into `num_bins` equal-width bins over [0, 1] (last bin closed)."""
    labels, scores = _as_arrays(labels, scores)
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1; got {num_bins}.")
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    index = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, num_bins - 1)
    counts = np.bincount(index, minlength=num_bins)
    sums = np.bincount(index, weights=scores, minlength=num_bins)
    positives = np.bincount(index, weights=labels.astype(np.float64), minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.where(counts > 0, sums / counts, np.nan)
        fraction_fake = np.where(counts > 0, positives / counts, np.nan)
    return Reliability(edges, mean_predicted, fraction_fake, counts)


def expected_calibration_error(labels, scores, num_bins: int = DEFAULT_CALIBRATION_BINS) -> float:
    """Count-weighted mean |mean p_fake - fraction fake| over the reliability bins."""
    table = reliability(labels, scores, num_bins)
    filled = table.counts > 0
    gaps = np.abs(table.mean_predicted[filled] - table.fraction_fake[filled])
    return float(np.sum(gaps * table.counts[filled]) / np.sum(table.counts))


def max_f1_threshold(labels, scores) -> tuple[float, float]:
    """The distinct score that maximises F1 of the fake class; ties keep the highest threshold.

    Returns:
        (threshold, f1).
    """
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1))  # First maximum = highest threshold (descending order).
    return float(thresholds[best]), float(f1[best])


def choose_threshold(labels, scores, rule: str) -> tuple[float, str]:
    """Turns `--threshold` (eer | max_f1 | a number) into a threshold and how it was chosen.

    Args:
        labels, scores: the split the threshold is chosen on (validation).
        rule: "eer", "max_f1", or a number in [0, 1] given as text or float.

    Returns:
        (threshold, description), e.g. (0.43, "eer").

    Raises:
        ValueError: naming the rule, when it is none of the above or the
            split cannot support it (e.g. a single class for "eer").
    """
    text = str(rule).strip().lower()
    if text not in THRESHOLD_RULES:
        return _fixed_threshold(rule), "fixed"
    if text == "eer":
        _, threshold = equal_error_rate(labels, scores)
        if math.isnan(threshold):
            raise ValueError(
                "--threshold=eer needs both classes in the validation split; "
                "pass a number instead, e.g. --threshold=0.5."
            )
        return threshold, "eer"
    labels, scores = _as_arrays(labels, scores)  # "max_f1"
    if not np.any(labels == schema.FAKE):
        raise ValueError(
            "--threshold=max_f1 needs fake examples in the validation split; "
            "pass a number instead, e.g. --threshold=0.5."
        )
    threshold, _ = max_f1_threshold(labels, scores)
    return threshold, "max_f1"


def _fixed_threshold(rule) -> float:
    try:
        value = float(str(rule).strip())
    except ValueError:
        raise ValueError(
            f"Threshold rule {rule!r} is not one of {list(THRESHOLD_RULES)} or a number in [0, 1]."
        ) from None
    return schema.check_threshold(value, "--threshold")


def summarise(labels, scores, threshold: float, num_bins: int = DEFAULT_CALIBRATION_BINS) -> dict:
    """Every figure of the report for one split at one threshold, JSON-ready (NaN becomes None)."""
    labels, scores = _as_arrays(labels, scores)
    eer, eer_threshold = equal_error_rate(labels, scores)
    figures = {
        "num_examples": int(labels.size),
        "num_fake": int(np.sum(labels == schema.FAKE)),
        "num_real": int(np.sum(labels == schema.REAL)),
        "threshold": float(threshold),
        "accuracy": accuracy(labels, scores, threshold),
        "roc_auc": roc_auc(labels, scores),
        "average_precision": average_precision(labels, scores),
        "eer": eer,
        "eer_threshold": eer_threshold,
        "log_loss": log_loss(labels, scores),
        "ece": expected_calibration_error(labels, scores, num_bins),
        "per_class": per_class_report(labels, scores, threshold),
        "confusion_matrix": confusion_matrix(labels, scores, threshold).tolist(),
    }
    return json_ready(figures)


def json_ready(figures: dict) -> dict:
    """NaN figures become None, so JSON holds `null` where a figure is undefined."""
    return {
        key: (None if isinstance(value, float) and math.isnan(value) else value)
        for key, value in figures.items()
    }


def by_group(labels, scores, groups, threshold: float) -> dict[str, dict]:
    """Figures per group (a source or generator name), JSON-ready.

    Per group: counts, accuracy at `threshold` (for a one-class group, the share of
    it called right: fakes caught or reals passed), mean p_fake, and ROC-AUC/EER.
    Deepfake sources usually hold one class (a generator's fakes, a camera or
    site's reals), which has no ROC of its own; such a group is ranked against
    every example of the other class in the split, the way per-manipulation
    figures of FaceForensics++ and DeepfakeBench are read. `auc_against` says
    which: "own" (the group holds both classes), "all real", "all fake", or None
    when the split holds no example of the other class.

    Raises:
        ValueError: when `groups` has not one entry per score.
    """
    labels, scores = _as_arrays(labels, scores)
    groups = np.asarray([str(group) for group in groups])
    if groups.shape != labels.shape:
        raise ValueError(f"groups has {groups.size} values but scores has {scores.size}.")
    result = {}
    for group in sorted(set(groups.tolist())):
        inside = groups == group
        group_labels, group_scores = labels[inside], scores[inside]
        if _has_both_classes(group_labels):
            against, ranked = "own", inside
        else:
            other = schema.REAL if group_labels[0] == schema.FAKE else schema.FAKE
            ranked = inside | (labels == other)
            against = f"all {schema.LABEL_NAMES[other]}" if np.any(labels == other) else None
        eer, _ = equal_error_rate(labels[ranked], scores[ranked])
        result[group] = json_ready(
            {
                "num_examples": int(inside.sum()),
                "num_real": int(np.sum(group_labels == schema.REAL)),
                "num_fake": int(np.sum(group_labels == schema.FAKE)),
                "accuracy": accuracy(group_labels, group_scores, threshold),
                "mean_p_fake": float(np.mean(group_scores)),
                "roc_auc": roc_auc(labels[ranked], scores[ranked]),
                "eer": eer,
                "auc_against": against,
            }
        )
    return result
