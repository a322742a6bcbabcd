"""FaceVerifier: the networks behind model.verify.verifier's rules: detect, align to the encoder's
templates, embed.

The one object the service holds. The images of a pass go through the detector together and
their chips through the encoder in one batch. NumPy throughout, whatever engine runs the networks:
on the openvino engine with networks shipped compiled (the default) nothing here imports torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from model.card import EncoderCard, load_card
from model.encoders import load_encoder
from model.encoders.flip import flip_mean, with_mirrors
from model.encoders.inference import InferenceEncoder
from model.engines.compile import check_engine
from model.engines.precision import default_precision, usable_precision
from model.errors import InputError
from model.faces.align import align_faces
from model.faces.detectors import Detector, build_detector
from model.faces.quality import ChipSignals, chip_signals
from model.faces.select import select_face
from model.types import AlignmentTemplate, Face
from model.verify.verifier import Stopwatch, Verifier

logger = logging.getLogger(__name__)


def l2_normalise(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero, as torch's F.normalize leaves it)."""
    norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
    return embeddings / np.maximum(norms, np.float32(1e-12))


def locate_faces(
    detector: Detector, arrays: Sequence[np.ndarray], policy: str, labels: Sequence[str] | None = None
) -> list[tuple[Face, int]]:
    """Detect faces in all images in one batched pass and choose one face per image under
    `policy`; the face and how many were found. Errors name the image (`labels`). For datasets
    and training; requests go through Verifier."""
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
) -> list[np.ndarray]:
    """One batch of chips per template, the i-th chip of each from faces[i] in arrays[i]."""
    return [
        np.concatenate([align_faces(array, [face], template) for array, face in zip(arrays, faces)])
        for template in templates
    ]


class FaceVerifier(Verifier):
    def __init__(
        self,
        card: EncoderCard,
        encoder: InferenceEncoder,
        detector: Detector,
        *,
        flip_tta: bool | None = None,
        face_policy: str = "subject",
        precision: str = "float32",
        engine: str = "torch",
    ):
        super().__init__(card, flip_tta=flip_tta, face_policy=face_policy, precision=precision, engine=engine)
        self.encoder = encoder
        self.detector = detector
        self.templates = card.alignment
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
        face_policy: str = "subject",
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
        once. The torch engine (where torch is installed) runs on torch's threads, process-wide,
        set to `threads`. `detectors_dir` holds each detector's weights folder (default: the
        shipped ones)."""
        card = load_card(encoder_dir)
        threads = threads or len(os.sched_getaffinity(0))
        engine = engine or card.inference.engine
        check_engine(engine)
        if engine == "torch":
            import torch

            torch.set_num_threads(threads)
        precision = usable_precision(precision or default_precision(card.precision, engine), engine)
        detector_args = {"detectors_dir": Path(detectors_dir)} if detectors_dir else {}
        # The encoder and the detectors load side by side: compiling a network releases the GIL, and
        # this takes about a third off loading the default card (of 0.5 s on the 2-core EPYC here).
        with ThreadPoolExecutor(2) as loaders:
            encoder = loaders.submit(load_encoder, card, precision, engine, threads, streams)
            detecting = loaders.submit(build_detector, detector or card.detector, min_face_size=min_face_size,
                                       engine=engine, threads=threads, streams=streams, **detector_args)
            encoder, detecting = encoder.result(), detecting.result()
        return cls(
            card,
            encoder,
            detecting,
            flip_tta=flip_tta,
            face_policy=face_policy,
            precision=precision,
            engine=engine,
        )

    # -- the stages ---------------------------------------------------------------------------

    @property
    def detection_side(self) -> int:
        return self.detector.max_side

    @property
    def first_detection_side(self) -> int | None:
        return self.detector.first_side

    def detect(self, images: Sequence[np.ndarray], every_face: bool = False) -> list[list[Face]]:
        return self.detector.detect(images, every_face)

    def encode(
        self, views: Sequence[tuple[np.ndarray, Face]]
    ) -> tuple[np.ndarray, dict[str, float], list[ChipSignals]]:
        watch = Stopwatch()
        chips = self.align([array for array, _ in views], [face for _, face in views])
        watch.lap("align")
        raw, norms = self.encode_chips_with_norms(chips)
        embeddings = l2_normalise(raw)
        watch.lap("embed")
        signals = [chip_signals(chip, tuple(row)) for chip, row in zip(chips[0], norms.tolist())]
        watch.lap("quality")
        return embeddings, watch.ms, signals

    def encode_chips_with_norms(self, chips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """encode_chips, and each face's raw member norms (of the face itself, not its mirror)."""
        if not self.flip_tta:
            return self.encoder.embed_with_norms(*chips)
        count = len(chips[0])
        both, norms = self.encoder.embed_with_norms(*[with_mirrors(batch) for batch in chips])
        return flip_mean(both[:count], both[count:]), norms[:count]

    def locate(
        self, arrays: Sequence[np.ndarray], policy: str | None = None, labels: Sequence[str] | None = None
    ) -> list[tuple[Face, int]]:
        return locate_faces(self.detector, arrays, policy or self.face_policy, labels)

    def encode_chips(self, chips: Sequence[np.ndarray], flip_tta: bool | None = None) -> np.ndarray:
        """Raw embeddings of aligned chips (one batch per template); with flip TTA, the mean of each
        face's and its mirror's embedding, both in one encoder pass. `flip_tta` None: the verifier's."""
        flip_tta = self.flip_tta if flip_tta is None else flip_tta
        if not flip_tta:
            return self.encoder(*chips)
        return flip_mean(*self.encoder.embed_with_mirror(chips))

    def align(self, arrays: Sequence[np.ndarray], faces: Sequence[Face]) -> list[np.ndarray]:
        return align_chips(arrays, faces, self.templates)

    def warm_up(self) -> None:
        """Run every stage once, so the first request compiles nothing (alignment's samplers and
        every input shape of the detector included)."""
        blank = np.zeros((160, 160, 3), dtype=np.uint8)
        self.detector.warm_up()
        face = Face(box=(0.0, 0.0, 160.0, 160.0), score=1.0, landmarks=self.templates[0].points)
        self.encode_chips(self.align([blank, blank], [face, face]))
