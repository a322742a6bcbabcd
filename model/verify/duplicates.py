"""Duplicate identities: subjects of one gallery that look like one person.

A pair of subjects is reported where the distance between their centroids is at or below the
threshold a search match would need (model.verify.open_set): the threshold that holds the gallery's
false-positive identification rate at the operating point's target, for its size and the subject's
number of templates; of a pair's two subjects, the stricter threshold. The enrolment's duplicate
check asks the same of a new subject's faces against the centroids enrolled then; the report asks
it of centroids against centroids, and finds what concurrent enrolments or imports let through.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from model.verify.grouping import close_pairs
from model.verify.open_set import SearchDecision


def subject_thresholds(decision: SearchDecision, counts: np.ndarray, gallery_size: int) -> np.ndarray:
    """Each subject's search threshold: its number of templates and the gallery's size."""
    by_count = {int(k): decision.judge(0.0, int(k), gallery_size).verdict.threshold for k in np.unique(counts)}
    return np.array([by_count[int(k)] for k in counts], dtype=np.float64)


def duplicate_pairs(
    centroids: np.ndarray, thresholds: np.ndarray, progress: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pairs (i < j) whose centroids are at or below the stricter of their two thresholds,
    closest first: their indices, distances and thresholds. The pairs come from
    model.verify.grouping.close_pairs (every pair compared up to its EXACT_UP_TO, an index above),
    `progress` called after each block."""
    if len(centroids) < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0), np.zeros(0)
    radius = float(np.nextafter(thresholds.max(), np.inf))  # close_pairs keeps pairs strictly below
    firsts, seconds, distances = close_pairs(centroids, radius, progress)
    limits = np.minimum(thresholds[firsts], thresholds[seconds])
    keep = distances <= limits
    order = np.argsort(distances[keep], kind="stable")
    return firsts[keep][order], seconds[keep][order], distances[keep][order], limits[keep][order]
