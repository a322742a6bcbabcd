"""Face quality's measures and combination against hand-computed values (model.faces.quality)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.card import QualityModel, QualityReason
from model.faces.quality import (
    NOSE_DEPTH_PER_HALF_EYE,
    QualityMeasures,
    assess,
    chip_signals,
    features,
    head_pose,
    measure,
)
from model.types import Face

# A frontal face: eyes level 40 px apart, nose halfway down between eyes and mouth.
FRONTAL = [(30.0, 40.0), (70.0, 40.0), (50.0, 60.0), (35.0, 80.0), (65.0, 80.0)]


def rotated(points, degrees: float, centre=(50.0, 60.0)):
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    return [(centre[0] + (x - centre[0]) * cos - (y - centre[1]) * sin,
             centre[1] + (x - centre[0]) * sin + (y - centre[1]) * cos) for x, y in points]


def test_a_frontal_face_has_no_pose() -> None:
    assert head_pose(FRONTAL, FRONTAL) == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)


def test_roll_is_the_eye_line_and_does_not_leak_into_yaw_or_pitch() -> None:
    yaw, pitch, roll = head_pose(rotated(FRONTAL, 30.0), FRONTAL)
    assert roll == pytest.approx(30.0) and yaw == pytest.approx(0.0, abs=1e-9) and pitch == pytest.approx(0.0, abs=1e-9)


def test_yaw_from_the_nose_offset() -> None:
    turned = list(FRONTAL)
    turned[2] = (50.0 + 10.0, 60.0)  # half the half-eye distance to the image's right
    yaw, pitch, _ = head_pose(turned, FRONTAL)
    assert yaw == pytest.approx(math.degrees(math.atan(0.5 / NOSE_DEPTH_PER_HALF_EYE)))
    assert pitch == pytest.approx(0.0, abs=1e-9)


def test_pitch_from_the_nose_height() -> None:
    raised = list(FRONTAL)
    raised[2] = (50.0, 55.0)  # an eighth of the eye-mouth height (40 px) above frontal: head tilted up
    _, pitch, _ = head_pose(raised, FRONTAL)
    assert pitch == pytest.approx(math.degrees(math.asin(0.125 / 0.45)))


def test_chip_signals() -> None:
    flat = np.full((3, 40, 40), 128.0)
    signals = chip_signals(flat, (10.0, 2.0))
    assert signals.sharpness == 0.0 and signals.brightness == pytest.approx(128 / 255)
    assert signals.dark_fraction == 0.0 and signals.bright_fraction == 0.0 and signals.embedding_norms == (10.0, 2.0)
    checker = np.indices((40, 40)).sum(axis=0) % 2 * 255.0
    sharp = chip_signals(np.stack([checker] * 3), (1.0,))
    # Every inner pixel's Laplacian is +-4 * 255: variance (4 * 255)^2.
    assert sharp.sharpness == pytest.approx((4 * 255.0) ** 2)
    dark = chip_signals(np.zeros((40, 40, 3)), (1.0,))  # channels last is accepted too
    assert dark.dark_fraction == 1.0 and dark.brightness == 0.0


def test_measure_uses_the_photo_pixels_and_the_chip() -> None:
    face = Face(box=(20, 30, 80, 90), score=0.8, landmarks=tuple(FRONTAL))
    measures = measure(face, chip_signals(np.full((3, 20, 20), 255.0), (5.0,)), FRONTAL)
    assert measures.eye_distance == 40.0 and measures.detection_score == 0.8 and measures.bright_fraction == 1.0


MEASURES = QualityMeasures(eye_distance=math.e ** 3, yaw=-20.0, pitch=5.0, roll=3.0, detection_score=0.9,
                           sharpness=math.e - 1, brightness=0.3, dark_fraction=0.1, bright_fraction=0.05,
                           embedding_norms=(math.e,))


def test_features_by_hand() -> None:
    assert features(MEASURES) == pytest.approx([3.0, 20.0, 5.0, 0.9, 1.0, 0.2, 0.15, 1.0])


def quality_model(**changes) -> QualityModel:
    values = {"version": "t", "features": [str(i) for i in range(8)], "mean": [0.0] * 8, "scale": [1.0] * 8,
              "weights": [1.0, -0.1, 0, 0, 0, 0, 0, 0], "bias": -1.0, "levels": {"high": 0.9, "medium": 0.5},
              "reasons": {"small_face": [QualityReason(measure="eye_distance", below=30.0)],
                          "extreme_pose": [QualityReason(measure="yaw", above=15.0, absolute=True),
                                           QualityReason(measure="pitch", above=30.0, absolute=True)],
                          "weak_identity": [QualityReason(measure="embedding_norms", index=0, below=3.0)]}}
    return QualityModel(**{**values, **changes})


def test_assess_score_level_and_reasons() -> None:
    quality = assess(MEASURES, quality_model())
    # logit = 3 - 0.1 * 20 - 1 = 0: a score of one half, the lowest of "medium".
    assert quality.score == pytest.approx(0.5) and quality.level == "medium"
    assert quality.reasons == ("small_face", "extreme_pose", "weak_identity")  # 20 px < 30; |yaw| 20 > 15; e < 3
    assert assess(MEASURES, quality_model(bias=5.0)).level == "high"
    assert assess(MEASURES, quality_model(bias=-5.0)).level == "low"


def test_a_reason_without_its_measure_does_not_apply() -> None:
    rule = QualityReason(measure="sharpness", below=10.0)
    assert not rule.applies(QualityMeasures(eye_distance=1, yaw=0, pitch=0, roll=0, detection_score=1))
    with pytest.raises(ValueError):
        quality_model(mean=[0.0])
