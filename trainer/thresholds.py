"""The default decision threshold recorded in detector.json: the validation EER point.

0.5 on a sigmoid is only the right threshold when the classes are balanced and
the model is calibrated; the equal-error-rate threshold (false-accept rate =
false-reject rate on the validation split) is a neutral default that
`trainer.evaluate` may recalibrate for a chosen operating point.
"""

from __future__ import annotations

import numpy as np


def eer_threshold(labels, scores) -> tuple[float, float]:
    """Threshold on `scores` where the false-positive and false-negative rates meet.

    Args:
        labels: 0 (real) / 1 (fake) per example.
        scores: p_fake per example; predicted fake when score >= threshold.

    Returns:
        (threshold, eer): the score threshold and the error rate there.

    Raises:
        ValueError: when either class is missing (no EER exists).
    """
    labels = np.asarray(labels).astype(int).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape.")
    positives, negatives = scores[labels == 1], scores[labels == 0]
    if not len(positives) or not len(negatives):
        raise ValueError(
            f"EER needs both classes; got {len(negatives)} real and {len(positives)} fake.")
    candidates = np.unique(scores)
    fpr = 1.0 - np.searchsorted(np.sort(negatives), candidates, side="left") / len(negatives)
    fnr = np.searchsorted(np.sort(positives), candidates, side="left") / len(positives)
    best = int(np.argmin(np.abs(fpr - fnr)))
    return float(candidates[best]), float((fpr[best] + fnr[best]) / 2)
