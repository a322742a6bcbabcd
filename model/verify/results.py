"""What a verification or an embedding request gives back, torch-free (the app and the test fakes share them)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from model.types import Face
from model.verify.decision import Verdict


@dataclass(frozen=True)
class FaceEmbedding:
    """The face chosen in one image and its L2-normalised embedding."""

    face: Face
    faces_detected: int
    embedding: np.ndarray


@dataclass(frozen=True)
class Verification:
    verdict: Verdict
    faces: tuple[FaceEmbedding, FaceEmbedding]
    timings_ms: dict[str, float] = field(default_factory=dict)
