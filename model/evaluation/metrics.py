"""Verification metrics on pair distances: ROC, AUC, EER, TAR at FAR, thresholds, k-fold accuracy.

Convention everywhere: a pair is declared "same" when its distance is <= the threshold. Inputs are
1-D arrays of distances and booleans (True = same identity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _split(distances: np.ndarray, is_same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distances = np.asarray(distances, dtype=np.float64)
    is_same = np.asarray(is_same, dtype=bool)
    if distances.shape != is_same.shape or distances.ndim != 1:
        raise ValueError("distances and is_same must be 1-D arrays of the same length")
    return distances[is_same], distances[~is_same]


def error_rates(distances, is_same, threshold: float) -> tuple[float, float]:
    """(false-accept rate, false-reject rate) at a threshold."""
    genuine, impostor = _split(distances, is_same)
    far = float(np.mean(impostor <= threshold)) if impostor.size else float("nan")
    frr = float(np.mean(genuine > threshold)) if genuine.size else float("nan")
    return far, frr


def accuracy(distances, is_same, threshold: float) -> float:
    distances = np.asarray(distances, dtype=np.float64)
    return float(np.mean((distances <= threshold) == np.asarray(is_same, dtype=bool)))


def roc_curve(distances, is_same) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FAR, TAR, thresholds), one point per distinct distance plus the origin, FAR ascending."""
    genuine, impostor = _split(distances, is_same)
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    tar = np.searchsorted(np.sort(genuine), thresholds, side="right") / max(genuine.size, 1)
    far = np.searchsorted(np.sort(impostor), thresholds, side="right") / max(impostor.size, 1)
    below_all = thresholds[0] - 1.0 if thresholds.size else 0.0
    return (
        np.concatenate([[0.0], far]),
        np.concatenate([[0.0], tar]),
        np.concatenate([[below_all], thresholds]),
    )


def roc_auc(distances, is_same) -> float:
    """Area under the ROC curve: the chance a genuine pair is closer than an impostor pair."""
    far, tar, _ = roc_curve(distances, is_same)
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2))


def equal_error_rate(distances, is_same) -> tuple[float, float]:
    """(EER, threshold) where FAR and FRR cross, linearly interpolated between ROC points."""
    far, tar, thresholds = roc_curve(distances, is_same)
    frr = 1.0 - tar
    gap = far - frr  # rises from -1 to +1 along the curve
    i = int(np.argmax(gap >= 0))
    if i == 0:
        return float(far[0]), float(thresholds[0])
    weight = -gap[i - 1] / (gap[i] - gap[i - 1])
    eer = far[i - 1] + weight * (far[i] - far[i - 1])
    threshold = thresholds[i - 1] + weight * (thresholds[i] - thresholds[i - 1])
    return float(eer), float(threshold)


def threshold_at_far(impostor_distances, target_far: float) -> float:
    """The largest threshold whose false-accept rate on these impostor pairs is <= target_far.

    Uses a partial sort, so tens of millions of impostor pairs cost little.
    """
    impostor = np.asarray(impostor_distances, dtype=np.float64)
    allowed = int(np.floor(target_far * impostor.size))
    if allowed == 0:
        return float(impostor.min()) - 1e-9
    if allowed >= impostor.size:
        return float(impostor.max())
    lower, upper = np.partition(impostor, (allowed - 1, allowed))[[allowed - 1, allowed]]
    return float((lower + upper) / 2) if upper > lower else float(np.nextafter(lower, -np.inf))


def tar_at_far(distances, is_same, target_far: float) -> tuple[float, float]:
    """(TAR, threshold) at the largest threshold whose FAR is <= target_far."""
    genuine, impostor = _split(distances, is_same)
    threshold = threshold_at_far(impostor, target_far)
    return float(np.mean(genuine <= threshold)), threshold


def best_accuracy_threshold(distances, is_same) -> float:
    """The threshold maximising balanced accuracy, (TAR + TNR) / 2, midway between neighbours.

    Balanced, so that millions of impostor pairs do not drown the genuine ones; on a set with as
    many genuine as impostor pairs (LFW's folds) it is the plain accuracy.
    """
    distances = np.asarray(distances, dtype=np.float64)
    is_same = np.asarray(is_same, dtype=bool)
    order = np.argsort(distances, kind="stable")
    sorted_d, sorted_same = distances[order], is_same[order]
    # When the first k sorted pairs are called same: genuine accepted among them, impostors
    # rejected after them, each as a rate.
    genuine_before = np.concatenate([[0], np.cumsum(sorted_same)]) / max(sorted_same.sum(), 1)
    impostors = (~sorted_same).sum()
    impostor_after = (impostors - np.concatenate([[0], np.cumsum(~sorted_same)])) / max(impostors, 1)
    correct = genuine_before + impostor_after
    # Only cut between distinct distances: a cut inside a tie cannot be realised by a threshold.
    valid = np.concatenate([[True], sorted_d[1:] > sorted_d[:-1], [True]])
    k = int(np.argmax(np.where(valid, correct, -1)))
    if k == 0:
        return float(sorted_d[0]) - 1e-9
    if k == sorted_d.size:
        return float(sorted_d[-1])
    return float((sorted_d[k - 1] + sorted_d[k]) / 2)


@dataclass(frozen=True)
class KFoldResult:
    accuracies: list[float]
    thresholds: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies))


def kfold_accuracy(distances, is_same, folds) -> KFoldResult:
    """LFW protocol: for each fold, choose the threshold on the other folds, score this one."""
    distances = np.asarray(distances, dtype=np.float64)
    is_same = np.asarray(is_same, dtype=bool)
    folds = np.asarray(folds)
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        test = folds == fold
        threshold = best_accuracy_threshold(distances[~test], is_same[~test])
        accuracies.append(accuracy(distances[test], is_same[test], threshold))
        thresholds.append(threshold)
    return KFoldResult(accuracies=accuracies, thresholds=thresholds)
