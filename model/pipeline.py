"""FaceVerifier: detect -> choose a face -> align to the encoder's template -> embed -> compare.

The one object the service holds. All images of a request go through the detector's refinement
stages together and all their chips through the encoder in one batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from model.card import Calibration, EncoderCard, OperatingPoint, load_card
from model.encoders.precision import usable_precision
from model.faces.align import align_faces
from model.faces.detectors import Detector, build_detector
from model.faces.select import SELECTION_POLICIES, select_face
from model.faces.types import Face
from model.errors import InputError
from model.images import to_array

# Images per detect-align-encode pass of one request.
EMBED_PASS = 4


@dataclass(frozen=True)
class FaceEmbedding:
    """The face chosen in one image and its L2-normalised embedding."""

    face: Face
    faces_detected: int
    embedding: np.ndarray


@dataclass(frozen=True)
class Verification:
    same: bool
    distance: float
    threshold: float
    operating_point: OperatingPoint | None
    probability_same: float | None
    faces: tuple[FaceEmbedding, FaceEmbedding]
    timings_ms: dict[str, float] = field(default_factory=dict)


class _Stopwatch:
    """Accumulates named stage durations in milliseconds."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[stage] = round((now - self._last) * 1000, 2)
        self._last = now


def l2_normalise(embeddings: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(embeddings, dim=-1)


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two L2-normalised embeddings (0..2)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


class FaceVerifier:
    def __init__(
        self,
        card: EncoderCard,
        encoder: nn.Module,
        detector: Detector,
        *,
        flip_tta: bool | None = None,
        face_policy: str = "largest",
        precision: str = "float32",
    ):
        if face_policy not in SELECTION_POLICIES:
            raise ValueError(f"face_policy must be one of {SELECTION_POLICIES}")
        self.card = card
        self.encoder = encoder
        self.detector = detector
        self.templates = card.templates
        self.flip_tta = card.data.get("inference", {}).get("flip_tta", False) if flip_tta is None else flip_tta
        self.face_policy = face_policy
        self.precision = precision  # what `encoder` runs in, for reports and /info
        self.calibration: Calibration | None = card.calibration(self.flip_tta)

    @classmethod
    def from_folders(
        cls,
        encoder_dir: str | Path,
        detectors_dir: str | Path | None = None,
        *,
        detector: str | None = None,
        flip_tta: bool | None = None,
        face_policy: str = "largest",
        min_face_size: int = 20,
        precision: str | None = None,
    ) -> FaceVerifier:
        """`detector` None means the card's own (that its templates were fitted to); `precision`
        None the card's own (that of its calibration) where the CPU runs it natively, else float32.
        `detectors_dir` holds each detector's weights folder (default: the shipped ones)."""
        card = load_card(encoder_dir)
        precision = usable_precision(precision or card.precision)
        detector_args = {"detectors_dir": Path(detectors_dir)} if detectors_dir else {}
        return cls(
            card,
            card.load_encoder(precision),
            build_detector(detector or card.detector, min_face_size=min_face_size, **detector_args),
            flip_tta=flip_tta,
            face_policy=face_policy,
            precision=precision,
        )

    # -- stages -------------------------------------------------------------------------------

    def locate(
        self, arrays: Sequence[np.ndarray], policy: str | None = None, labels: Sequence[str] | None = None
    ) -> list[tuple[Face, int]]:
        """Detect faces in all images in one batched pass and choose one face per image."""
        policy = policy or self.face_policy
        labels = labels or [f"image {i + 1}" for i in range(len(arrays))]
        chosen = []
        for faces, array, label in zip(self.detector.detect(arrays), arrays, labels):
            height, width = array.shape[:2]
            try:
                chosen.append((select_face(faces, policy, (width, height)), len(faces)))
            except InputError as error:
                raise error.about(label) from None
        return chosen

    @torch.inference_mode()
    def encode_chips(self, chips: Sequence[torch.Tensor], flip_tta: bool | None = None) -> torch.Tensor:
        """Raw embeddings of aligned chips (one batch per template); with flip TTA, the mean of each
        face's and its mirror's embedding, both in one encoder pass."""
        flip_tta = self.flip_tta if flip_tta is None else flip_tta
        if not flip_tta:
            return self.encoder(*chips)
        count = len(chips[0])
        both = self.encoder(*[torch.cat([batch, batch.flip(-1)]) for batch in chips])
        return (both[:count] + both[count:]) / 2

    def align(self, arrays: Sequence[np.ndarray], faces: Sequence[Face]) -> list[torch.Tensor]:
        """One batch of chips per template of the encoder's card."""
        return [
            torch.cat([align_faces(array, [face], template) for array, face in zip(arrays, faces)])
            for template in self.templates
        ]

    # -- requests -----------------------------------------------------------------------------

    def embed(
        self,
        images: Sequence[Image.Image | np.ndarray],
        policy: str | None = None,
        labels: Sequence[str] | None = None,
    ) -> tuple[list[FaceEmbedding], dict[str, float]]:
        """Embeddings of the chosen face of each image, and the stage timings (summed over passes).

        Images go through in passes of EMBED_PASS, so a request of many images needs the working
        memory of a few, not of all of them at once.
        """
        labels = labels or [f"image {i + 1}" for i in range(len(images))]
        results: list[FaceEmbedding] = []
        timings: dict[str, float] = {}
        for start in range(0, len(images), EMBED_PASS):
            part = slice(start, start + EMBED_PASS)
            embedded, stages = self._embed_pass(images[part], policy, labels[part])
            results += embedded
            for stage, ms in stages.items():
                timings[stage] = round(timings.get(stage, 0.0) + ms, 2)
        return results, timings

    def _embed_pass(
        self, images: Sequence[Image.Image | np.ndarray], policy: str | None, labels: Sequence[str]
    ) -> tuple[list[FaceEmbedding], dict[str, float]]:
        watch = _Stopwatch()
        arrays = [to_array(i) if isinstance(i, Image.Image) else i for i in images]
        located = self.locate(arrays, policy, labels)
        watch.lap("detect")
        chips = self.align(arrays, [face for face, _ in located])
        watch.lap("align")
        embeddings = l2_normalise(self.encode_chips(chips)).numpy()
        watch.lap("embed")
        results = [
            FaceEmbedding(face=face, faces_detected=count, embedding=embedding)
            for (face, count), embedding in zip(located, embeddings)
        ]
        return results, watch.ms

    def resolve_threshold(
        self, threshold: float | None = None, operating_point: str | None = None
    ) -> tuple[float, OperatingPoint | None]:
        """An explicit threshold wins; else the named (or default) calibrated operating point."""
        if threshold is not None:
            return float(threshold), None
        if self.calibration is None:
            raise InputError(
                f"encoder {self.card.name} has no calibrated operating points; give an explicit threshold",
                "invalid_request",
            )
        name = operating_point or self.calibration.default
        try:
            point = self.calibration.operating_points[name]
        except KeyError:
            known = ", ".join(sorted(self.calibration.operating_points))
            raise InputError(f"unknown operating point {name!r}; known: {known}", "invalid_request") from None
        return point.threshold, point

    def verify(
        self,
        image1: Image.Image | np.ndarray,
        image2: Image.Image | np.ndarray,
        *,
        threshold: float | None = None,
        operating_point: str | None = None,
        policy: str | None = None,
        labels: Sequence[str] = ("image1", "image2"),
    ) -> Verification:
        limit, point = self.resolve_threshold(threshold, operating_point)
        (first, second), timings = self.embed([image1, image2], policy, labels)
        distance = embedding_distance(first.embedding, second.embedding)
        return Verification(
            same=distance <= limit,
            distance=distance,
            threshold=limit,
            operating_point=point,
            probability_same=self.calibration.probability_same(distance) if self.calibration else None,
            faces=(first, second),
            timings_ms=timings,
        )

    def warm_up(self) -> None:
        """One real inference through every stage, so the first request is not the slow one."""
        blank = np.zeros((160, 160, 3), dtype=np.uint8)
        self.detector.detect([blank, blank])
        self.encode_chips([torch.zeros(2, 3, t.size, t.size) for t in self.templates])
