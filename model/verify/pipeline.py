"""FaceVerifier: detect -> choose a face -> align to the encoder's template -> embed -> compare.

The one object the service holds. All images of a request go through the detector's refinement
stages together and all their chips through the encoder in one batch.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from model.card import Calibration, EncoderCard, load_card
from model.encoders import load_encoder
from model.encoders.flip import encode_with_mirror, flip_mean
from model.engines.precision import default_precision, usable_precision
from model.errors import InputError
from model.faces.align import align_faces
from model.faces.detectors import Detector, build_detector
from model.faces.select import select_face
from model.images import to_array
from model.types import SELECTION_POLICIES, AlignmentTemplate, Face
from model.verify.decision import Decision, embedding_distance, resolve_decision
from model.verify.results import FaceEmbedding, Verification

# Images per detect-align-encode pass of one request: the working memory of two images, not of all of
# a request's. On the int8 default, a 16-image /embed in passes of 4 left the server at 442 MiB, in
# passes of 2 at 409, at the same speed (the encoders' time grows linearly with the batch here).
EMBED_PASS = 2

logger = logging.getLogger(__name__)


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


def locate_faces(
    detector: Detector, arrays: Sequence[np.ndarray], policy: str, labels: Sequence[str] | None = None
) -> list[tuple[Face, int]]:
    """Detect faces in all images in one batched pass and choose one face per image under
    `policy`; the face and how many were found. Errors name the image (`labels`)."""
    labels = labels or [f"image {i + 1}" for i in range(len(arrays))]
    chosen = []
    for faces, array, label in zip(detector.detect(arrays), arrays, labels):
        height, width = array.shape[:2]
        try:
            chosen.append((select_face(faces, policy, (width, height)), len(faces)))
        except InputError as error:
            raise error.about(label) from None
    return chosen


def align_chips(
    arrays: Sequence[np.ndarray], faces: Sequence[Face], templates: Sequence[AlignmentTemplate]
) -> list[torch.Tensor]:
    """One batch of chips per template, the i-th chip of each from faces[i] in arrays[i]."""
    return [
        torch.cat([align_faces(array, [face], template) for array, face in zip(arrays, faces)])
        for template in templates
    ]


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
        engine: str = "torch",
    ):
        if face_policy not in SELECTION_POLICIES:
            raise ValueError(f"face_policy must be one of {SELECTION_POLICIES}")
        self.card = card
        self.encoder = encoder
        self.detector = detector
        self.templates = card.alignment
        self.flip_tta = card.inference.flip_tta if flip_tta is None else flip_tta
        self.face_policy = face_policy
        self.precision = precision  # what `encoder` runs in, and on what: for reports and /info
        self.engine = engine
        self.calibration: Calibration | None = card.calibration_for(self.flip_tta)
        if self.calibration and self.calibration.precision not in (None, precision):
            logger.warning("the operating points were calibrated in %s and the encoder runs in %s: its distances "
                           "differ a little, so the measured error rates hold only approximately",
                           self.calibration.precision, precision)

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
        engine: str | None = None,
        threads: int | None = None,
        streams: int = 1,
    ) -> FaceVerifier:
        """`detector` None means the card's own (that its templates were fitted to); `precision`
        None the card's own (that of its calibration) where this engine and CPU run it natively,
        else float32; `engine` None the card's own. `threads`: each inference's threads, by default
        all the cores this process may use; `streams`: how many inferences a compiled engine runs at
        once. Around a compiled network torch only aligns and decodes, as fast on one thread, which
        leaves the cores to the engine: torch's threads, process-wide, are set to `threads` on the
        torch engine and to 1 on another. `detectors_dir` holds each detector's weights folder
        (default: the shipped ones)."""
        card = load_card(encoder_dir)
        threads = threads or len(os.sched_getaffinity(0))
        engine = engine or card.inference.engine
        torch.set_num_threads(threads if engine == "torch" else 1)
        precision = usable_precision(precision or default_precision(card.precision, engine), engine)
        detector_args = {"detectors_dir": Path(detectors_dir)} if detectors_dir else {}
        return cls(
            card,
            load_encoder(card, precision, engine, threads, streams),
            build_detector(detector or card.detector, min_face_size=min_face_size, engine=engine, threads=threads,
                           streams=streams, **detector_args),
            flip_tta=flip_tta,
            face_policy=face_policy,
            precision=precision,
            engine=engine,
        )

    # -- stages -------------------------------------------------------------------------------

    def locate(
        self, arrays: Sequence[np.ndarray], policy: str | None = None, labels: Sequence[str] | None = None
    ) -> list[tuple[Face, int]]:
        return locate_faces(self.detector, arrays, policy or self.face_policy, labels)

    @torch.inference_mode()
    def encode_chips(self, chips: Sequence[torch.Tensor], flip_tta: bool | None = None) -> torch.Tensor:
        """Raw embeddings of aligned chips (one batch per template); with flip TTA, the mean of each
        face's and its mirror's embedding, both in one encoder pass."""
        flip_tta = self.flip_tta if flip_tta is None else flip_tta
        if not flip_tta:
            return self.encoder(*chips)
        return flip_mean(*encode_with_mirror(self.encoder, chips))

    def align(self, arrays: Sequence[np.ndarray], faces: Sequence[Face]) -> list[torch.Tensor]:
        return align_chips(arrays, faces, self.templates)

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

    def decision(self, threshold: float | None = None, operating_point: str | None = None) -> Decision:
        """How a request decides (see model.verify.decision), resolved before any image is read."""
        return resolve_decision(self.calibration, threshold, operating_point)

    def verify(
        self,
        image1: Image.Image | np.ndarray,
        image2: Image.Image | np.ndarray,
        decision: Decision,
        *,
        policy: str | None = None,
        labels: Sequence[str] = ("image1", "image2"),
    ) -> Verification:
        (first, second), timings = self.embed([image1, image2], policy, labels)
        verdict = decision.judge(embedding_distance(first.embedding, second.embedding))
        return Verification(verdict=verdict, faces=(first, second), timings_ms=timings)

    def warm_up(self) -> None:
        """One real inference through every stage, so the first request is not the slow one."""
        blank = np.zeros((160, 160, 3), dtype=np.uint8)
        self.detector.detect([blank, blank])
        self.encode_chips([torch.zeros(2, 3, t.size, t.size) for t in self.templates])
