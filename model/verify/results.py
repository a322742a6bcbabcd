"""What a verification or an embedding request gives back, torch-free (the app and the test fakes share them)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from model.faces.quality import FaceQuality
from model.types import Face
from model.verify.decision import Verdict


@dataclass(frozen=True)
class FaceEmbedding:
    """An L2-normalised embedding: of the face chosen in an image, with what the choice saw, or one
    a caller gave back (`face` None)."""

    embedding: np.ndarray
    face: Face | None = None
    faces_detected: int | None = None
    runner_up: Face | None = None  # of the other faces, the one most likely the photo's subject
    ambiguous: bool = False  # the runner-up is nearly as likely the subject (model.faces.select)
    quality: FaceQuality | None = None  # None where the card has no quality model, or for one given back


@dataclass(frozen=True)
class ComparedFace:
    """One face of the image searched under face_policy=all, compared with the other side."""

    face: Face
    verdict: Verdict
    quality: FaceQuality | None = None


@dataclass(frozen=True)
class Verification:
    """The verdict on the two sides; under face_policy=all, that of the best of `matches` (every
    face compared in side `matches_in`, 0 or 1, best first), whose face is then faces[matches_in]."""

    verdict: Verdict
    faces: tuple[FaceEmbedding, FaceEmbedding]
    timings_ms: dict[str, float] = field(default_factory=dict)
    matches: tuple[ComparedFace, ...] | None = None
    matches_in: int | None = None
