"""Face quality: how far a face can be trusted, from what the pipeline already has. Torch-free.

Measures, each interpretable on its own: the face's size (inter-eye distance in the photo's pixels),
its head pose estimated from the 5 landmarks against the encoder's frontal template, the sharpness
and exposure of the aligned chip, the detector's confidence, and a recognition-utility signal: the
norm of each encoder member's raw embedding before normalisation (small for faces the network finds
little identity in). A logistic model fitted on LFW View 1 and its synthetic degradations
(model.evaluation.quality) combines them into `score`, the estimated chance that a genuine
comparison of this face with a good photo of the same person is accepted at far_1e-3; `level` and
`reasons` come from thresholds fitted with it, kept in the card (model.card.QualityModel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.card import QualityModel
from model.types import Face

# Nose-tip depth in front of the eyes, relative to half the inter-eye distance, and relative to the
# eye-to-mouth height: typical adult proportions, which turn landmark offsets into angles.
NOSE_DEPTH_PER_HALF_EYE = 0.95
NOSE_DEPTH_PER_FACE_HEIGHT = 0.45
# Exposure is measured on the chip's middle half (the face, not the background in its corners).
DARK_LEVEL, BRIGHT_LEVEL = 16, 240  # grey levels counted as clipped


@dataclass(frozen=True)
class ChipSignals:
    """What the aligned chip and the encoder say about a face."""

    sharpness: float  # variance of the grey chip's Laplacian (0..255 grey levels)
    brightness: float  # mean grey level of the chip's middle, 0..1
    dark_fraction: float  # share of the middle at or below DARK_LEVEL
    bright_fraction: float  # share at or above BRIGHT_LEVEL
    embedding_norms: tuple[float, ...]  # each encoder member's raw embedding norm


@dataclass(frozen=True)
class QualityMeasures:
    eye_distance: float  # pixels of the photo
    yaw: float  # degrees, estimated; positive: the face turned towards the image's right
    pitch: float  # degrees, estimated; positive: the nose above its frontal place (head up)
    roll: float  # degrees; alignment undoes it, so it is reported, not held against the face
    detection_score: float
    sharpness: float | None = None
    brightness: float | None = None
    dark_fraction: float | None = None
    bright_fraction: float | None = None
    embedding_norms: tuple[float, ...] | None = None


@dataclass(frozen=True)
class FaceQuality:
    score: float
    level: str  # low | medium | high
    reasons: tuple[str, ...]
    measures: QualityMeasures


def chip_signals(chip: np.ndarray, embedding_norms: tuple[float, ...]) -> ChipSignals:
    """Signals of one aligned chip, (3, size, size) or (size, size, 3) RGB with values 0..255."""
    chip = np.asarray(chip, np.float32)
    red, green, blue = chip if chip.shape[0] == 3 else chip.transpose(2, 0, 1)
    # float32, channel by channel: a few hundred microseconds less per face than a float64 product.
    grey = np.float32(0.299) * red + np.float32(0.587) * green + np.float32(0.114) * blue
    laplacian = (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1])
    size = grey.shape[0]
    middle = grey[size // 4 : size - size // 4, size // 4 : size - size // 4]
    return ChipSignals(
        sharpness=float(laplacian.var(dtype=np.float64)),
        brightness=float(middle.mean(dtype=np.float64) / 255.0),
        dark_fraction=float(np.mean(middle <= DARK_LEVEL)),
        bright_fraction=float(np.mean(middle >= BRIGHT_LEVEL)),
        embedding_norms=tuple(float(norm) for norm in embedding_norms),
    )


def head_pose(landmarks, frontal) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from 5 landmarks, against `frontal`: the same 5 points of a
    frontal face (an alignment template's). Roll is the eye line's angle; in the frame that undoes
    it, yaw is the nose's sideways offset from the eyes' and mouth's midline, pitch its height
    between the eye and mouth lines, each turned into an angle by typical facial depth."""
    points = np.asarray(landmarks, np.float64)
    eyes_mid = (points[0] + points[1]) / 2
    dx, dy = points[1] - points[0]
    roll = math.degrees(math.atan2(dy, dx))
    cos, sin = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    level = (points - eyes_mid) @ np.array([[cos, -sin], [sin, cos]])
    half_eye = max(math.hypot(dx, dy) / 2, 1e-6)
    mouth_mid = (level[3] + level[4]) / 2
    height = max(mouth_mid[1], 1e-6)
    midline = mouth_mid[0] * level[2][1] / height  # the face's midline at the nose's height
    yaw_offset = (level[2][0] - midline) / half_eye

    template = np.asarray(frontal, np.float64)
    template_level = template - (template[0] + template[1]) / 2
    template_height = (template_level[3][1] + template_level[4][1]) / 2
    frontal_height_ratio = template_level[2][1] / template_height
    pitch_offset = frontal_height_ratio - level[2][1] / height
    yaw = math.degrees(math.atan(yaw_offset / NOSE_DEPTH_PER_HALF_EYE))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, pitch_offset / NOSE_DEPTH_PER_FACE_HEIGHT))))
    return yaw, pitch, roll


def measure(face: Face, signals: ChipSignals | None, frontal) -> QualityMeasures:
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    yaw, pitch, roll = head_pose(face.landmarks, frontal)
    chip = {} if signals is None else {
        "sharpness": signals.sharpness, "brightness": signals.brightness, "dark_fraction": signals.dark_fraction,
        "bright_fraction": signals.bright_fraction, "embedding_norms": signals.embedding_norms,
    }
    return QualityMeasures(eye_distance=math.hypot(rx - lx, ry - ly), yaw=yaw, pitch=pitch, roll=roll,
                           detection_score=float(face.score), **chip)


def features(measures: QualityMeasures) -> np.ndarray:
    """The combination's inputs, in QUALITY_FEATURES order: sizes and sharpness on a log scale
    (their effect saturates), pose as magnitudes, exposure as its distance from mid-grey."""
    norms = measures.embedding_norms or ()
    return np.array([
        math.log(max(measures.eye_distance, 1.0)),
        abs(measures.yaw),
        abs(measures.pitch),
        measures.detection_score,
        math.log1p(measures.sharpness or 0.0),
        abs((measures.brightness if measures.brightness is not None else 0.5) - 0.5),
        (measures.dark_fraction or 0.0) + (measures.bright_fraction or 0.0),
        *[math.log(max(norm, 1e-6)) for norm in norms],
    ])


def assess(measures: QualityMeasures, model: QualityModel) -> FaceQuality:
    """The score, level and reasons of a face under the card's quality model."""
    x = (features(measures) - np.asarray(model.mean)) / np.asarray(model.scale)
    logit = float(x @ np.asarray(model.weights) + model.bias)
    score = 1.0 / (1.0 + math.exp(-logit)) if logit > -50 else 0.0
    level = "high" if score >= model.levels["high"] else "medium" if score >= model.levels["medium"] else "low"
    reasons = tuple(code for code, rules in model.reasons.items() if any(rule.applies(measures) for rule in rules))
    return FaceQuality(round(score, 4), level, reasons, measures)
