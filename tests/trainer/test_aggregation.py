"""The aggregation rules for photos, tracks and videos (trainer.aggregation)."""

import math

import numpy as np
import pytest

from trainer import aggregation


def test_track_score_is_the_sigmoid_of_the_mean_logit_of_the_top_half():
    frames = [0.9, 0.1, 0.99, 0.2]
    top = sorted(frames, reverse=True)[:2]
    expected = 1 / (1 + math.exp(-np.mean([math.log(p / (1 - p)) for p in top])))
    assert aggregation.track_score(frames) == pytest.approx(expected)
    # A few clean frames do not wash out a mostly fake track; one noisy frame does not decide.
    assert aggregation.track_score([0.95, 0.97, 0.02]) > 0.9
    assert aggregation.track_score([0.99, 0.05, 0.04, 0.03, 0.02]) < 0.5


def test_top_k_and_edges():
    assert [aggregation.top_k(n) for n in (1, 2, 3, 10)] == [1, 1, 2, 5]
    with pytest.raises(ValueError, match="at least one"):
        aggregation.track_score([])
    assert aggregation.track_score([0.0]) == pytest.approx(aggregation.EPS)
    assert aggregation.track_score([1.0]) == pytest.approx(1 - aggregation.EPS)
    assert np.allclose(aggregation.sigmoid(aggregation.logit([0.2, 0.5, 0.8])), [0.2, 0.5, 0.8])
    assert np.all(np.isfinite(aggregation.sigmoid([-1e4, 1e4])))


def test_media_is_as_fake_as_its_most_suspicious_part_and_none_without_parts():
    assert aggregation.media_score([0.2, 0.7, 0.4]) == 0.7
    assert aggregation.media_score([]) is None
