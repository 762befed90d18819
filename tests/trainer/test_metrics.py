"""trainer.metrics against scikit-learn and against small cases worked by hand."""

import math

import numpy as np
import pytest
from sklearn import calibration
from sklearn import metrics as skm

from trainer import metrics


def _random_case(seed, size=400, ties=False):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0.0, 1.0)
    if ties:  # Coarse scores: many exact ties, the case a naive sort gets wrong.
        scores = np.round(scores, 1)
    return labels, scores


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False), (3, True)])
def test_threshold_free_metrics_match_sklearn(seed, ties):
    labels, scores = _random_case(seed, ties=ties)
    assert metrics.roc_auc(labels, scores) == pytest.approx(
        skm.roc_auc_score(labels, scores), abs=1e-12
    )
    assert metrics.average_precision(labels, scores) == pytest.approx(
        skm.average_precision_score(labels, scores), abs=1e-12
    )
    assert metrics.log_loss(labels, scores) == pytest.approx(
        skm.log_loss(labels, np.clip(scores, 1e-15, 1 - 1e-15)), rel=1e-9
    )
    fpr, tpr, thresholds = metrics.roc_curve(labels, scores)
    sk_fpr, sk_tpr, sk_thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thresholds[1:], sk_thresholds[1:])


@pytest.mark.parametrize("seed,threshold", [(4, 0.5), (5, 0.3), (6, 0.71)])
def test_thresholded_metrics_match_sklearn(seed, threshold):
    labels, scores = _random_case(seed)
    predicted = (scores >= threshold).astype(int)
    assert metrics.accuracy(labels, scores, threshold) == pytest.approx(
        skm.accuracy_score(labels, predicted)
    )
    np.testing.assert_array_equal(
        metrics.confusion_matrix(labels, scores, threshold),
        skm.confusion_matrix(labels, predicted, labels=[0, 1]),
    )
    report = metrics.per_class_report(labels, scores, threshold)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=[0, 1], zero_division=0
    )
    for index, name in enumerate(("real", "fake")):
        assert report[name]["precision"] == pytest.approx(precision[index])
        assert report[name]["recall"] == pytest.approx(recall[index])
        assert report[name]["f1"] == pytest.approx(f1[index])
        assert report[name]["support"] == support[index]


def test_ece_matches_sklearn_calibration_curve():
    labels, scores = _random_case(7)
    fraction, mean_predicted = calibration.calibration_curve(
        labels, scores, n_bins=10, strategy="uniform"
    )
    counts = np.histogram(scores, bins=np.linspace(0, 1, 11))[0]
    counts = counts[counts > 0]
    expected = np.sum(np.abs(fraction - mean_predicted) * counts) / counts.sum()
    assert metrics.expected_calibration_error(labels, scores, 10) == pytest.approx(
        expected, abs=1e-12
    )
    table = metrics.reliability(labels, scores, 10)
    assert table.counts.sum() == labels.size


def test_hand_worked_case():
    # Scores sorted: 0.9 F, 0.8 R, 0.7 F, 0.4 F, 0.3 R, 0.1 R.
    labels = [1, 0, 1, 1, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.4, 0.3, 0.1]
    # Pairs (fake, real) ranked correctly: 0.9 beats 3 reals, 0.7 and 0.4 beat 2 each: 7 of 9.
    assert metrics.roc_auc(labels, scores) == pytest.approx(7 / 9)
    # Precision at each recall step: 1/1, 2/3, 3/4; AP = (1 + 2/3 + 3/4) / 3.
    assert metrics.average_precision(labels, scores) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    # At 0.5: predicted fake = {0.9, 0.8, 0.7}: TP 2, FP 1, FN 1, TN 2.
    np.testing.assert_array_equal(metrics.confusion_matrix(labels, scores, 0.5), [[2, 1], [1, 2]])
    assert metrics.accuracy(labels, scores, 0.5) == pytest.approx(4 / 6)
    # At threshold 0.7 FPR = 1/3 and FNR = 1/3: the ROC meets FPR = FNR exactly there.
    eer, threshold = metrics.equal_error_rate(labels, scores)
    assert eer == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.7)
    # Perfect, confident predictions: log loss ~ 0; a 0.5 guess: log(2).
    assert metrics.log_loss([0, 1], [0.0, 1.0]) == pytest.approx(0.0, abs=1e-12)
    assert metrics.log_loss([0, 1], [0.5, 0.5]) == pytest.approx(math.log(2))
    # All in one bin at 0.75 with half fakes: ECE = |0.75 - 0.5|.
    assert metrics.expected_calibration_error([0, 1], [0.75, 0.75]) == pytest.approx(0.25)


def test_eer_interpolates_between_operating_points():
    # 3 fakes and 5 reals: FPR moves in steps of 1/5 and FNR in steps of 1/3, so no
    # operating point has FPR = FNR and the EER comes from interpolation.
    labels = [1, 1, 0, 0, 1, 0, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    # Independent computation: the crossing of FPR and FNR, linearly interpolated.
    i = np.argmax(fnr - fpr <= 0)
    w = (fnr[i - 1] - fpr[i - 1]) / ((fnr[i - 1] - fpr[i - 1]) - (fnr[i] - fpr[i]))
    expected = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    eer, threshold = metrics.equal_error_rate(labels, scores)
    assert eer == pytest.approx(expected)
    assert 0 < eer < 0.5
    assert threshold in scores


def test_threshold_choice_on_crafted_scores():
    # Separable: the reals end at 0.6, the fakes start at 0.65. At 0.65 precision and
    # recall are both 1, so max-F1 picks it; EER (0 there) must separate them too.
    labels = [0, 0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.6, 0.65, 0.8, 0.9]
    threshold, source = metrics.choose_threshold(labels, scores, "max_f1")
    assert (threshold, source) == (0.65, "max_f1")
    threshold, source = metrics.choose_threshold(labels, scores, "eer")
    assert source == "eer"
    assert metrics.accuracy(labels, scores, threshold) == 1.0
    assert metrics.choose_threshold(labels, scores, "0.25") == (0.25, "fixed")
    assert metrics.choose_threshold(labels, scores, 0.5) == (0.5, "fixed")
    # Overlapping classes: max-F1 prefers catching every fake at the cost of one real.
    labels = [0, 0, 1, 0, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    threshold, _ = metrics.choose_threshold(labels, scores, "max_f1")
    f1_at = {t: skm.f1_score(labels, (np.array(scores) >= t).astype(int)) for t in scores}
    assert f1_at[threshold] == max(f1_at.values())
    assert threshold == 0.3


@pytest.mark.parametrize(
    "rule,message", [("median", "not one of"), ("1.5", "outside"), ("-0.1", "outside")]
)
def test_bad_threshold_rules_name_the_value(rule, message):
    with pytest.raises(ValueError, match=message):
        metrics.choose_threshold([0, 1], [0.2, 0.8], rule)


def test_single_class_and_bad_inputs():
    assert math.isnan(metrics.roc_auc([1, 1], [0.2, 0.8]))
    with pytest.raises(ValueError, match="both classes"):
        metrics.choose_threshold([1, 1], [0.2, 0.8], "eer")
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        metrics.roc_auc([0, 2], [0.2, 0.8])
    with pytest.raises(ValueError, match="2 values but scores has 3"):
        metrics.accuracy([0, 1], [0.1, 0.2, 0.3], 0.5)
    summary = metrics.summarise([1, 1], [0.2, 0.8], 0.5)
    assert summary["roc_auc"] is None and summary["eer"] is None
    assert summary["per_class"]["fake"]["recall"] == 0.5


def test_by_group_ranks_one_class_groups_against_the_other_class():
    labels, scores = _random_case(8, size=300)
    rng = np.random.default_rng(9)
    # Reals from two cameras; fakes from two generators; one mixed group.
    groups = np.where(
        labels == 1, rng.choice(["gan", "swap"], 300), rng.choice(["cam", "web"], 300)
    )
    groups = groups.astype("U8")
    groups[:20] = "mixed"
    result = metrics.by_group(labels, scores, groups, 0.5)
    assert sorted(result) == ["cam", "gan", "mixed", "swap", "web"]
    for name, row in result.items():
        inside = groups == name
        assert row["num_examples"] == int(inside.sum())
        assert row["accuracy"] == pytest.approx(
            skm.accuracy_score(labels[inside], scores[inside] >= 0.5)
        )
        if name == "mixed":
            ranked = inside
            assert row["auc_against"] == "own"
        else:
            other = 1 - labels[inside][0]
            ranked = inside | (labels == other)
            assert row["auc_against"] == ("all fake" if other else "all real")
        assert row["roc_auc"] == pytest.approx(
            skm.roc_auc_score(labels[ranked], scores[ranked]), abs=1e-12
        )
        assert row["eer"] == pytest.approx(
            metrics.equal_error_rate(labels[ranked], scores[ranked])[0]
        )
    # A split with one class only: no ROC, the figures say so instead of inventing one.
    alone = metrics.by_group([1, 1], [0.2, 0.9], ["gan", "gan"], 0.5)["gan"]
    assert alone["roc_auc"] is None and alone["auc_against"] is None and alone["accuracy"] == 0.5
    with pytest.raises(ValueError, match="groups has 1 values but scores has 2"):
        metrics.by_group([0, 1], [0.2, 0.9], ["a"], 0.5)


def test_label_name_is_predict_labels_for_one_score():
    assert [metrics.label_name(p, 0.4) for p in (0.39, 0.4, 0.9)] == ["real", "fake", "fake"]
