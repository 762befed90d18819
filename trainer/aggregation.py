"""From per-face scores to per-photo, per-track and per-video verdicts: one rule, one place.

Prediction on photos and videos (`trainer.predict`, batch scoring) and the
video-level figures of evaluation (`trainer.evaluate`, the cross-dataset matrix)
all aggregate through these functions, so "how a video is called fake" has one
answer in the code base.

The rules, and why:
- A **track** (one face followed across sampled frames) scores the mean *logit* of
  its most suspicious frames: the top `ceil(TOP_FRACTION * n)` frames by score.
  Manipulated videos usually contain clean-looking frames (blur, occlusion, a
  turned head); averaging everything would wash the evidence out, while the
  single most suspicious frame would let one noisy frame decide. Averaging in
  logit space keeps a frame at p=0.999 from counting the same as one at p=0.9.
- A **photo** or a **video** is as fake as its most suspicious face or track
  (the maximum): one manipulated face makes the media manipulated.
- The label is `p_fake >= threshold`, the export's threshold (`metrics.predict_labels`).

Pure numpy: no TensorFlow, cheap in Beam workers.
"""

from __future__ import annotations

from collections.abc import Iterable
import math

import numpy as np

# Fraction of a track's frames (the most suspicious ones) whose logits are averaged.
TOP_FRACTION = 0.5
# p_fake is clipped to [EPS, 1 - EPS] before taking logits, so 0 and 1 stay finite.
EPS = 1e-7


def logit(p_fake) -> np.ndarray:
    """log(p / (1 - p)) of probabilities clipped away from 0 and 1."""
    p = np.clip(np.asarray(p_fake, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(logits) -> np.ndarray:
    """The inverse of `logit`; the tanh form never overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))


def top_k(num_frames: int) -> int:
    """How many of a track's `num_frames` frames are averaged (at least one)."""
    if num_frames <= 0:
        raise ValueError(f"A track needs at least one scored frame, got {num_frames}.")
    return max(1, math.ceil(TOP_FRACTION * num_frames))


def track_score(frame_p_fake: Iterable[float]) -> float:
    """p_fake of a track: sigmoid of the mean logit of its top-k frames.

    Raises:
        ValueError: for a track with no scored frame.
    """
    logits = np.sort(logit(list(frame_p_fake)))[::-1]
    return float(sigmoid(np.mean(logits[: top_k(len(logits))])))


def media_score(part_p_fake: Iterable[float]) -> float | None:
    """p_fake of a photo (its faces) or a video (its tracks): the most suspicious part.

    Returns None when there is no part (a photo without a face): such media have
    no verdict and are reported as such, never scored as a whole frame.
    """
    scores = [float(p) for p in part_p_fake]
    return max(scores) if scores else None
