"""The torch-free decision: which threshold a request uses, the verdict and the probability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.card import Calibration
from model.errors import Uncalibrated, UnknownOperatingPoint
from model.verify.decision import embedding_distance, probability_same, resolve_decision

CALIBRATION = Calibration.model_validate({
    "default": "far_1e-3",
    "operating_points": {
        "far_1e-3": {"threshold": 0.5, "description": "strict", "held_out": {"far": 0.001, "frr": 0.02}},
        "best_accuracy": {"threshold": 0.6, "held_out": {"far": 0.01, "frr": 0.01}},
    },
    "probability": {"a": -10.0, "b": 5.0},
})


def test_distance_between_unit_vectors():
    assert embedding_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(math.sqrt(2))
    assert embedding_distance(np.array([0.6, 0.8], np.float32), np.array([0.6, 0.8], np.float32)) == 0.0


def test_the_default_operating_point_a_named_one_or_an_explicit_threshold():
    default = resolve_decision(CALIBRATION)
    assert default.threshold == 0.5 and default.operating_point.name == "far_1e-3"
    assert resolve_decision(CALIBRATION, operating_point="best_accuracy").threshold == 0.6
    explicit = resolve_decision(CALIBRATION, threshold=0.42)
    assert explicit.threshold == 0.42 and explicit.operating_point is None


def test_same_at_or_below_the_threshold():
    decision = resolve_decision(CALIBRATION)
    assert decision.judge(0.5).same and not decision.judge(0.5000001).same
    verdict = decision.judge(0.4)
    assert verdict.distance == 0.4 and verdict.threshold == 0.5 and verdict.operating_point.far == 0.001
    assert verdict.probability_same == pytest.approx(1 / (1 + math.exp(-1.0)))  # sigmoid(-10 * 0.4 + 5)


def test_unknown_points_and_missing_calibrations_are_refused():
    with pytest.raises(UnknownOperatingPoint, match="unknown operating point 'far_1e-9'; known: best_accuracy, far_1e-3"):
        resolve_decision(CALIBRATION, operating_point="far_1e-9")
    with pytest.raises(Uncalibrated, match="no calibrated operating points"):
        resolve_decision(None)
    uncalibrated = resolve_decision(None, threshold=0.7)
    assert uncalibrated.judge(0.1).same and uncalibrated.judge(0.1).probability_same is None


def test_probability_never_overflows():
    assert probability_same(CALIBRATION, 1000.0) == 0.0
    assert probability_same(CALIBRATION, -1000.0) == 1.0
