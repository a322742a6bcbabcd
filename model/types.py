"""Names shared by the service and the model side, with no torch behind them: the app imports these.

A detected face, the five landmarks' order, the face-choice policies, the arithmetic an encoder may
run in and what runs them, the detectors by name, what made an embedding, and an encoder's
alignment template (the card holds it as data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
NUM_LANDMARKS = len(LANDMARK_NAMES)

SelectionPolicy = Literal["subject", "largest", "central", "reject"]
SELECTION_POLICIES: tuple[str, ...] = get_args(SelectionPolicy)
# /verify may also compare one face with every face of the other image.
VerifyPolicy = Literal[SelectionPolicy, Literal["all"]]

Precision = Literal["float32", "bfloat16", "int8"]
# Mirror test-time augmentation moves distances, so calibrations and embeddings are kept per mode.
InferenceMode = Literal["plain", "flip"]
PRECISION_NAMES: tuple[str, ...] = get_args(Precision)

# What runs the networks: torch (the reference, and the training framework), or OpenVINO's CPU
# runtime, compiled for the CPU it runs on.
Engine = Literal["torch", "openvino"]
ENGINE_NAMES: tuple[str, ...] = get_args(Engine)

DETECTOR_NAMES = ("mtcnn", "yunet")
# A detector, or "first+second": `first` with `second` run only where `first` finds no face.
DetectorChoice = Literal["yunet", "mtcnn", "yunet+mtcnn"]


def detector_parts(name: str) -> list[str]:
    """The detectors a name stands for: one of DETECTOR_NAMES, or "first+second"."""
    parts = name.split("+")
    if not 1 <= len(parts) <= 2 or any(part not in DETECTOR_NAMES for part in parts):
        raise ValueError(f"detector must be one of {sorted(DETECTOR_NAMES)} or 'first+second', not {name!r}")
    return parts


@dataclass(frozen=True)
class Face:
    """One detected face in image pixel coordinates.

    `box` is (x1, y1, x2, y2); `landmarks` are five (x, y) points in LANDMARK_NAMES order, where
    left and right are as seen in the image (the subject's right eye is the image's left eye).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    def iou(self, other: Face) -> float:
        """Intersection over union of the two boxes."""
        width = min(self.box[2], other.box[2]) - max(self.box[0], other.box[0])
        height = min(self.box[3], other.box[3]) - max(self.box[1], other.box[1])
        intersection = max(width, 0.0) * max(height, 0.0)
        union = self.area + other.area - intersection
        return intersection / union if union > 0 else 0.0


@dataclass(frozen=True)
class EmbeddingModel:
    """What made an embedding: the encoder, its version, the inference mode, and the arithmetic it
    ran in. Embeddings of one encoder, version and inference mode lie in one space and are compared
    (`space`); the precision is recorded, not compared (None where a caller did not say it)."""

    name: str
    version: str
    inference: InferenceMode
    precision: str | None = None

    @property
    def space(self) -> tuple[str, str, str]:
        return (self.name, self.version, self.inference)


class AlignmentTemplate(BaseModel):
    """Where an encoder wants the five landmarks (LANDMARK_NAMES order) in its size x size chip.

    `weights` say how much each landmark counts in the least-squares fit, e.g. to trust the eyes
    more than the mouth corners, which move with expression. `name` and `note` say where the
    points came from; they do not change the alignment.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str | None = Field(None, alias="template")
    size: int = Field(ge=1)
    points: tuple[tuple[float, float], ...]
    weights: tuple[float, ...] = (1.0,) * NUM_LANDMARKS
    note: str | None = None

    @model_validator(mode="after")
    def _well_formed(self) -> AlignmentTemplate:
        if len(self.points) != NUM_LANDMARKS or len(self.weights) != NUM_LANDMARKS:
            raise ValueError(f"a template needs {NUM_LANDMARKS} points and {NUM_LANDMARKS} weights")
        if min(self.weights) < 0 or sum(w > 0 for w in self.weights) < 2:
            raise ValueError("template weights must be >= 0 with at least two positive")
        if len(set(self.points)) < 2:
            raise ValueError("template points must not all coincide")
        return self

    def resized(self, size: int) -> AlignmentTemplate:
        """The same face framing in a chip of another size (pixel-centre coordinates scale about -0.5)."""
        factor = size / self.size
        points = tuple(((x + 0.5) * factor - 0.5, (y + 0.5) * factor - 0.5) for x, y in self.points)
        return self.model_copy(update={"size": size, "points": points})
