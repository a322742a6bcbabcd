"""A probe against an enrolled subject of k templates: one score, and the threshold that holds for k.

Comparing a probe with each of k templates and accepting on the best raises false accepts about
k-fold at a 1:1 threshold, so the subject-level decision is its own rule with its own thresholds,
calibrated per k (model.evaluation.subject_calibration) and kept in the card. Torch-free: the service and the
calibration share these functions, so the rule exists once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from model.card import SubjectRule


def _distances(probes: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """(P, S, k) Euclidean distances of unit probes (P, D) to each subject's unit templates (S, k, D)."""
    similarity = np.einsum("pd,skd->psk", probes, templates)
    return np.sqrt(np.clip(2.0 - 2.0 * similarity, 0.0, 4.0))


def _nearest(probes: np.ndarray, templates: np.ndarray) -> np.ndarray:
    return _distances(probes, templates).min(axis=2)


def _mean_distance(probes: np.ndarray, templates: np.ndarray) -> np.ndarray:
    return _distances(probes, templates).mean(axis=2)


def _centroid(probes: np.ndarray, templates: np.ndarray) -> np.ndarray:
    centres = templates.mean(axis=1)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return _distances(probes, centres[:, None, :])[:, :, 0]


RULES: dict[SubjectRule, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "nearest": _nearest,  # the distance to the closest template (max-of-k similarity)
    "mean_distance": _mean_distance,  # the mean distance to the templates
    "centroid": _centroid,  # the distance to the templates' normalised mean
}


def subject_scores(rule: SubjectRule, probes: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """(P, S) scores (distances: lower = more alike) of probes (P, D) against subjects of k
    templates each (S, k, D), all unit vectors, in float64."""
    return RULES[rule](np.asarray(probes, np.float64), np.asarray(templates, np.float64))


def subject_distances(rule: SubjectRule, probe: np.ndarray, templates: np.ndarray) -> tuple[float, np.ndarray]:
    """One probe (D,) against one subject's templates (k, D): its score under `rule`, and the
    distance to each template (the best-matching one is reported)."""
    probe = np.asarray(probe, np.float64)[None, :]
    templates = np.asarray(templates, np.float64)[None, :, :]
    return float(RULES[rule](probe, templates)[0, 0]), _distances(probe, templates)[0, 0]
