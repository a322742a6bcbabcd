"""The same/different decision, torch-free: which threshold a request uses, the distance, the verdict.

A request's threshold is resolved once, before any image is decoded (an explicit threshold, or a
calibrated operating point of the active inference mode, by name or the card's default), and the
resulting Decision judges the distance the pipeline measures. The service's fakes in the tests use
this very object, so the rule exists once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.card import Calibration, OperatingPoint
from model.distance import pair_distances
from model.errors import Uncalibrated, UnknownOperatingPoint


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two L2-normalised embeddings (0..2), in float64."""
    return float(pair_distances(np.asarray(a, np.float64), np.asarray(b, np.float64)))


def probability_same(calibration: Calibration | None, distance: float) -> float | None:
    """The calibrated P(same person) at this distance (a logistic map, equal priors); None uncalibrated."""
    if calibration is None or calibration.probability is None:
        return None
    logit = calibration.probability.a * distance + calibration.probability.b
    if logit < 0:  # the two branches keep exp() from overflowing
        return math.exp(logit) / (1.0 + math.exp(logit))
    return 1.0 / (1.0 + math.exp(-logit))


@dataclass(frozen=True)
class Verdict:
    same: bool
    distance: float
    threshold: float
    operating_point: OperatingPoint | None  # None when the request gave an explicit threshold
    probability_same: float | None


@dataclass(frozen=True)
class Decision:
    """Same person when the distance is at or below `threshold`."""

    threshold: float
    operating_point: OperatingPoint | None
    calibration: Calibration | None  # its logistic map gives probability_same; None: no probability

    @classmethod
    def at(cls, point: OperatingPoint, calibration: Calibration | None = None) -> Decision:
        return cls(point.threshold, point, calibration)

    def judge(self, distance: float) -> Verdict:
        return Verdict(
            same=distance <= self.threshold,
            distance=distance,
            threshold=self.threshold,
            operating_point=self.operating_point,
            probability_same=probability_same(self.calibration, distance),
        )


def resolve_decision(
    calibration: Calibration | None, threshold: float | None = None, operating_point: str | None = None
) -> Decision:
    """An explicit threshold wins; else the named (or default) operating point of `calibration`.
    Raises Uncalibrated when neither can be had."""
    if threshold is not None:
        return Decision(float(threshold), None, calibration)
    if calibration is None:
        raise Uncalibrated("the encoder has no calibrated operating points")
    return Decision.at(pick_point(calibration.operating_points, operating_point or calibration.default), calibration)


def pick_point(points: dict[str, OperatingPoint], name: str) -> OperatingPoint:
    """The operating point `name`, or UnknownOperatingPoint naming the known ones."""
    try:
        return points[name]
    except KeyError:
        known = ", ".join(sorted(points))
        raise UnknownOperatingPoint(f"unknown operating point {name!r}; known: {known}") from None
