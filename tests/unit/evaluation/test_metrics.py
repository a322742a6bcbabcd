"""Metrics against values worked out by hand."""

import numpy as np
import pytest

from model.evaluation import metrics

# Genuine pairs at 0.1, 0.2, 0.6; impostor pairs at 0.4, 0.8, 0.9, 1.0.
DISTANCES = np.array([0.1, 0.2, 0.6, 0.4, 0.8, 0.9, 1.0])
IS_SAME = np.array([True, True, True, False, False, False, False])


def test_error_rates_at_threshold():
    far, frr = metrics.error_rates(DISTANCES, IS_SAME, 0.5)
    assert far == pytest.approx(1 / 4)  # 0.4 accepted
    assert frr == pytest.approx(1 / 3)  # 0.6 rejected


def test_accuracy_counts_threshold_as_same():
    assert metrics.accuracy(DISTANCES, IS_SAME, 0.6) == pytest.approx(6 / 7)
    assert metrics.accuracy(DISTANCES, IS_SAME, 0.3) == pytest.approx(6 / 7)


def test_best_accuracy_threshold_is_balanced_and_midway_between_neighbours():
    # Cutting after 0.2: TAR 2/3, TNR 1 -> 0.833; after 0.6: TAR 1, TNR 3/4 -> 0.875 (0.6 | 0.8).
    assert metrics.best_accuracy_threshold(DISTANCES, IS_SAME) == pytest.approx(0.7)


def test_best_accuracy_threshold_on_balanced_pairs_is_plain_accuracy():
    distances = np.array([0.1, 0.3, 0.5, 0.2, 0.7, 0.9])
    is_same = np.array([True, True, True, False, False, False])
    threshold = metrics.best_accuracy_threshold(distances, is_same)
    assert threshold == pytest.approx(0.6)
    assert metrics.accuracy(distances, is_same, threshold) == pytest.approx(5 / 6)


def test_best_accuracy_threshold_never_splits_a_tie():
    distances = np.array([0.5, 0.5, 0.9])
    is_same = np.array([True, False, False])
    threshold = metrics.best_accuracy_threshold(distances, is_same)
    assert metrics.accuracy(distances, is_same, threshold) == pytest.approx(2 / 3)


def test_roc_auc_is_probability_genuine_closer_than_impostor():
    # Of the 12 genuine/impostor comparisons only (0.6, 0.4) is misordered: AUC = 11/12.
    assert metrics.roc_auc(DISTANCES, IS_SAME) == pytest.approx(11 / 12)


def test_equal_error_rate_interpolates_crossing():
    # At t in [0.4, 0.6): FAR = 1/4, FRR = 1/3; at t in [0.2, 0.4): FAR 0, FRR 1/3.
    # The ROC steps from (FAR 0, FRR 1/3) at t=0.2 to (1/4, 1/3) at t=0.4 and (1/4, 0) at 0.6:
    # the crossing lies on the second segment, where FAR - FRR goes from -1/12 to +1/4.
    eer, threshold = metrics.equal_error_rate(DISTANCES, IS_SAME)
    weight = (1 / 12) / (1 / 4 + 1 / 12)
    assert eer == pytest.approx(1 / 4 + weight * (1 / 4 - 1 / 4))
    assert threshold == pytest.approx(0.4 + weight * 0.2)


def test_threshold_at_far_allows_exactly_the_budget():
    impostor = np.arange(1, 101) / 100.0  # 0.01 .. 1.00
    threshold = metrics.threshold_at_far(impostor, 0.05)
    assert threshold == pytest.approx(0.055)
    assert np.mean(impostor <= threshold) == pytest.approx(0.05)
    assert metrics.threshold_at_far(impostor, 0.001) < 0.01  # no false accept allowed


def test_tar_at_far():
    tar, threshold = metrics.tar_at_far(DISTANCES, IS_SAME, 0.25)
    assert threshold == pytest.approx(0.6)  # one of four impostors (0.4) may pass: cut at (0.4+0.8)/2
    assert tar == pytest.approx(1.0)


def test_kfold_chooses_threshold_on_other_folds():
    distances = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7])
    is_same = np.array([True, False, True, False, True, False])
    folds = np.array([0, 0, 1, 1, 2, 2])
    result = metrics.kfold_accuracy(distances, is_same, folds)
    assert result.accuracies == [1.0, 1.0, 1.0]
    assert result.thresholds[0] == pytest.approx((0.3 + 0.7) / 2)
    assert result.mean == 1.0 and result.std == 0.0
