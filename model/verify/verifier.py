"""What a verification or an embedding request does, over any detector and encoder, torch-free.

`Verifier` holds the rules once: which face of an image is meant (model.faces.select), one face
against every face of another image (face_policy=all), embeddings a caller gives back in place of an
image (checked against the model serving), the decision, and the passes that bound a request's
working memory. A subclass provides the two stages that need networks: `detect` and `encode`
(model.verify.pipeline.FaceVerifier; the service's tests plug in a fake with the same rules).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from model.card import Calibration, EncoderCard, SubjectRule, tta_mode
from model.errors import (
    AllFacesNeedAnImage,
    IncompatibleEmbedding,
    InputError,
    InvalidEmbedding,
    LowQuality,
    NoFaceDetected,
    NoQualityModel,
    Uncalibrated,
)
from model.faces.quality import ChipSignals, FaceQuality, assess, measure
from model.faces.select import FaceChoice, choose_face, rank_faces
from model.images import Photo
from model.types import SELECTION_POLICIES, EmbeddingModel, Face
from model.verify.decision import Decision, embedding_distance, pick_point, resolve_decision
from model.verify.grouping import GroupingRule, resolve_grouping
from model.verify.open_set import SearchDecision, resolve_search
from model.verify.results import FaceEmbedding, ComparedFace, Verification

# Images per detect-align-encode pass of one request: the working memory of two images, not of all of
# a request's. On the int8 default, a 16-image /embed in passes of 4 left the server at 442 MiB, in
# passes of 2 at 409, at the same speed (the encoders' time grows linearly with the batch here).
EMBED_PASS = 2
# Faces face_policy=all compares at most (the largest), unless the caller says otherwise.
MAX_FACES = 32
# How far from unit length a given embedding may be: /embed's float32 values, printed and read back
# or rounded to 4 decimals, stay well within it.
NORM_TOLERANCE = 1e-3
# A face found again in its finer region is the same face when the boxes overlap at least this much.
SAME_FACE_IOU = 0.5

Side = Photo | FaceEmbedding | Image.Image | np.ndarray


class Stopwatch:
    """Accumulates named stage durations in milliseconds."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[stage] = round(self.ms.get(stage, 0.0) + (now - self._last) * 1000, 2)
        self._last = now

    def add(self, stages: dict[str, float]) -> None:
        for stage, ms in stages.items():
            self.ms[stage] = round(self.ms.get(stage, 0.0) + ms, 2)
        self._last = time.perf_counter()


def _photo(side: Side) -> Photo | FaceEmbedding:
    return Photo.of(side) if isinstance(side, (Image.Image, np.ndarray)) else side


class Verifier:
    """The requests' rules over `detect` and `encode`, which a subclass implements."""

    detector: Any  # what /info shows of it: has .settings

    def __init__(
        self,
        card: EncoderCard,
        *,
        flip_tta: bool | None = None,
        face_policy: str = "subject",
        precision: str = "float32",
        engine: str = "torch",
    ):
        if face_policy not in SELECTION_POLICIES:
            raise ValueError(f"face_policy must be one of {SELECTION_POLICIES}")
        self.card = card
        self.flip_tta = card.inference.flip_tta if flip_tta is None else flip_tta
        self.face_policy = face_policy
        self.precision = precision  # what the encoder runs in, and on what: for reports and /info
        self.engine = engine
        self.calibration: Calibration | None = card.calibration_for(self.flip_tta)
        # A face whose box spans fewer pixels than the largest chip is aligned from finer pixels
        # where the photo has them (model.images.Photo.view).
        self.align_side = max(template.size for template in card.alignment)

    # -- the stages a subclass provides -------------------------------------------------------

    @property
    def detection_side(self) -> int | None:
        """The longest image side detection looks at (larger JPEGs are decoded down to it); None: all."""
        return None

    @property
    def first_detection_side(self) -> int | None:
        """The side of detection's first look, where it has one (see decode_side); None: none."""
        return None

    def needs_every_face(self, policy: str | None) -> bool:
        """Whether a request under `policy` (None: the service's) is about every face of an image,
        the small ones too: face_policy=all compares them, reject counts them."""
        return (policy or self.face_policy) in ("all", "reject")

    def decode_side(self, every_face: bool) -> int | None:
        """How finely to decode a JPEG for a request: for its main face, as finely as detection's first
        look needs (a photo where that finds nothing is decoded again for the full look, _find); for
        every face, as finely as the full look needs."""
        return self.detection_side if every_face or not self.first_detection_side else self.first_detection_side

    def detect(self, images: Sequence[np.ndarray], every_face: bool = False) -> list[list[Face]]:
        """Faces in each image (uint8 HxWx3 RGB), in its pixels; `every_face` where the small ones
        matter too (a detector may otherwise look for the main face first, at less cost)."""
        raise NotImplementedError

    def encode(
        self, views: Sequence[tuple[np.ndarray, Face]]
    ) -> tuple[np.ndarray, dict[str, float], Sequence[ChipSignals] | None]:
        """L2-normalised embeddings (N, dim) of each face in its image, the stage timings, and
        what each face's chip and raw embedding say of its quality (None: nothing)."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """One real inference through every stage, so the first request is not the slow one."""

    # -- what requests ask --------------------------------------------------------------------

    def decision(self, threshold: float | None = None, operating_point: str | None = None) -> Decision:
        """How a request decides (see model.verify.decision), resolved before any image is read."""
        return resolve_decision(self.calibration, threshold, operating_point)

    def subject_decision(self, templates: int, threshold: float | None = None,
                         operating_point: str | None = None) -> Decision:
        """How a probe is judged against a subject of `templates` templates: an explicit threshold
        on the subject-level score, or a subject-level operating point calibrated for that many
        (model.card.SubjectCalibration), by name or the default. No probability: the logistic map
        is the 1:1 distance's."""
        if threshold is not None:
            return Decision(float(threshold), None, None)
        calibration = self.card.subjects_for(self.flip_tta)
        if calibration is None:
            raise Uncalibrated("the encoder has no calibrated subject-level operating points")
        return Decision.at(pick_point(calibration.points_for(templates), operating_point or calibration.default))

    def search_decision(self, threshold: float | None = None, operating_point: str | None = None) -> SearchDecision:
        """How a 1:N search judges its candidates (model.verify.open_set), resolved before any image is read."""
        return resolve_search(self.card.subjects_for(self.flip_tta), self.card.search_for(self.flip_tta), threshold,
                              operating_point)

    def grouping_rule(self, threshold: float | None = None) -> GroupingRule:
        """How a batch of faces is grouped by person (model.verify.grouping), resolved before any image is read."""
        return resolve_grouping(self.card.grouping_for(self.flip_tta), threshold)

    @property
    def subject_rule(self) -> SubjectRule:
        """How a probe is scored against a subject's templates (the calibrated rule)."""
        calibration = self.card.subjects_for(self.flip_tta)
        return calibration.rule if calibration else "centroid"

    @property
    def embedding_model(self) -> EmbeddingModel:
        return EmbeddingModel(self.card.name, self.card.version, tta_mode(self.flip_tta), self.precision)

    def quality_floor(self, min_quality: float | str | None) -> float | None:
        """A request's min_quality as a score: a number, or a level's lowest score (low: none)."""
        if min_quality is None:
            return None
        if self.card.quality is None:
            raise NoQualityModel("this encoder has no quality model")
        if isinstance(min_quality, str):
            return 0.0 if min_quality == "low" else self.card.quality.levels[min_quality]
        return float(min_quality)

    def _quality(self, face: Face, signals: ChipSignals | None) -> FaceQuality | None:
        if self.card.quality is None:
            return None
        return assess(measure(face, signals, self.card.alignment[0].points), self.card.quality)

    def accept_embedding(self, values: Sequence[float], made_by: EmbeddingModel, label: str) -> FaceEmbedding:
        """An embedding a caller gives back, if this service can compare it: made by this very model
        and inference mode (IncompatibleEmbedding otherwise), of its dimension, finite and of unit
        length within NORM_TOLERANCE (InvalidEmbedding otherwise)."""
        serving = self.embedding_model
        if made_by.space != serving.space:
            differ = [f"{name} {getattr(made_by, name)!r} (serving {getattr(serving, name)!r})"
                      for name in ("name", "version", "inference") if getattr(made_by, name) != getattr(serving, name)]
            raise IncompatibleEmbedding(f"made by another model: {', '.join(differ)}; embed the image again with "
                                        "this service", label)
        vector = np.asarray(values, dtype=np.float64)
        if vector.shape != (self.card.embedding_dim,):
            raise InvalidEmbedding(f"has {vector.size} values; this model's embeddings have "
                                   f"{self.card.embedding_dim}", label)
        if not np.isfinite(vector).all():
            raise InvalidEmbedding("holds NaN or infinite values", label)
        norm = float(np.linalg.norm(vector))
        if not math.isclose(norm, 1.0, abs_tol=NORM_TOLERANCE):
            raise InvalidEmbedding(f"has length {norm:.6g}; this model's embeddings have unit length", label)
        return FaceEmbedding((vector / norm).astype(np.float32))

    def embed(
        self, images: Sequence[Photo | Image.Image | np.ndarray], policy: str | None = None,
        labels: Sequence[str] | None = None, min_quality: float | None = None,
    ) -> tuple[list[FaceEmbedding], dict[str, float]]:
        """Embeddings of the chosen face of each image, and the stage timings (summed over passes
        of EMBED_PASS images: a request of many images needs the working memory of a few). A face
        whose quality score is below `min_quality` is refused (low_quality)."""
        photos = [_photo(image) for image in images]
        labels = labels or [f"image {i + 1}" for i in range(len(photos))]
        policy = policy or self.face_policy
        results: list[FaceEmbedding] = []
        watch = Stopwatch()
        for start in range(0, len(photos), EMBED_PASS):
            part, part_labels = photos[start : start + EMBED_PASS], labels[start : start + EMBED_PASS]
            part, found = self._find(part, self.needs_every_face(policy))
            watch.lap("detect")
            choices = [_chosen(faces, photo, policy, label) for faces, photo, label in zip(found, part, part_labels)]
            vectors, qualities = self._encode([(photo, choice.face) for photo, choice in zip(part, choices)], watch)
            for quality, label in zip(qualities, part_labels):
                _check_quality(quality, min_quality, label)
            results += [FaceEmbedding(vector, choice.face, len(faces), choice.runner_up, choice.ambiguous, quality)
                        for vector, choice, faces, quality in zip(vectors, choices, found, qualities)]
        return results, _stages(watch)

    def embed_every_face(
        self, images: Sequence[Photo | Image.Image | np.ndarray], max_faces: int = MAX_FACES,
    ) -> tuple[list[list[FaceEmbedding]], dict[str, float]]:
        """Embeddings of every face of each image (the `max_faces` largest, largest first), as
        grouping a batch of photos needs, and the stage timings. An image without a face has none."""
        photos = [_photo(image) for image in images]
        results: list[list[FaceEmbedding]] = []
        watch = Stopwatch()
        for start in range(0, len(photos), EMBED_PASS):
            part = photos[start : start + EMBED_PASS]
            part, found = self._find(part, every_face=True)
            watch.lap("detect")
            kept = [[face for face, _ in rank_faces(faces, "largest")[:max_faces]] if faces else [] for faces in found]
            views = [(photo, face) for photo, faces in zip(part, kept) for face in faces]
            vectors, qualities = self._encode(views, watch) if views else ([], [])
            embedded = iter(zip(vectors, qualities))
            for faces, every in zip(kept, found):
                results.append([FaceEmbedding(vector, face, len(every), quality=quality)
                                for face, (vector, quality) in zip(faces, embedded)])
        return results, _stages(watch)

    def verify(
        self,
        first: Side,
        second: Side,
        decision: Decision,
        *,
        policy: str | None = None,
        labels: Sequence[str] = ("image1", "image2"),
        max_faces: int = MAX_FACES,
        min_quality: float | None = None,
    ) -> Verification:
        """Each side an image (its chosen face under `policy`) or a FaceEmbedding given back.

        Under policy "all" the chosen face of one side (by the service's own policy) is compared with
        every face of the other, at most `max_faces` of them (the largest), best match first: the
        faces of the second image, or of the first where the second is an embedding.
        """
        sides = [_photo(first), _photo(second)]
        photos = [index for index, side in enumerate(sides) if isinstance(side, Photo)]
        policy = policy or self.face_policy
        searched = None
        if policy == "all":
            if not photos:
                raise AllFacesNeedAnImage("face_policy=all compares the faces of an image")
            searched = 1 if 1 in photos else 0
        watch = Stopwatch()
        refined, faces = self._find([sides[index] for index in photos], self.needs_every_face(policy))
        for index, photo in zip(photos, refined):
            sides[index] = photo
        found = dict(zip(photos, faces))
        if photos:
            watch.lap("detect")
        chosen: dict[int, FaceChoice] = {}
        for index in photos:
            if index != searched:
                chosen[index] = _chosen(found[index], sides[index], self.face_policy if policy == "all" else policy,
                                        labels[index])
        candidates: list[Face] = []
        if searched is not None:
            if not found[searched]:
                raise NoFaceDetected("no face was detected in the image").about(labels[searched])
            candidates = [face for face, _ in rank_faces(found[searched], "largest")[:max_faces]]
        views = [(sides[index], chosen[index].face) for index in sorted(chosen)]
        views += [(sides[searched], face) for face in candidates]
        encoded, qualities = self._encode(views, watch) if views else ([], [])
        vectors, assessed = iter(encoded), iter(qualities)
        embedded: dict[int, FaceEmbedding] = {}
        for index in sorted(chosen):
            choice = chosen[index]
            quality = next(assessed)
            _check_quality(quality, min_quality, labels[index])
            embedded[index] = FaceEmbedding(next(vectors), choice.face, len(found[index]), choice.runner_up,
                                            choice.ambiguous, quality)
        for index, side in enumerate(sides):
            if isinstance(side, FaceEmbedding):
                embedded[index] = side
        if searched is None:
            verdict = decision.judge(embedding_distance(embedded[0].embedding, embedded[1].embedding))
            return Verification(verdict, (embedded[0], embedded[1]), _stages(watch))
        probe = embedded[1 - searched]
        scored = [(face, vector, decision.judge(embedding_distance(probe.embedding, vector)), quality)
                  for face, vector, quality in zip(candidates, vectors, assessed)]
        scored.sort(key=lambda match: match[2].distance)
        best_face, best_vector, best_verdict, best_quality = scored[0]
        embedded[searched] = FaceEmbedding(best_vector, best_face, len(found[searched]), quality=best_quality)
        return Verification(best_verdict, (embedded[0], embedded[1]), _stages(watch),
                            tuple(ComparedFace(face, verdict, quality) for face, _, verdict, quality in scored), searched)

    # -- the stages, on photos ----------------------------------------------------------------

    def _find(self, photos: Sequence[Photo],
              every_face: bool = False) -> tuple[list[Photo], list[list[Face]]]:
        """Faces in each photo, in the full image's pixels, in one batched detection; and the photos,
        where one without a face found was decoded again as finely as the full look needs (and
        looked at again there, with the full look at once, as the first found nothing already): the
        one its faces must be aligned from."""
        photos = list(photos)
        found = self.detect([photo.pixels for photo in photos], every_face) if photos else []
        for index, faces in enumerate(found):
            finer = photos[index].finer(self.detection_side) if not faces and self.detection_side else photos[index]
            if finer is not photos[index]:
                photos[index] = finer
                found[index] = self.detect([finer.pixels], every_face=True)[0]
        return photos, [[photo.face_in_full(face) for face in faces] for photo, faces in zip(photos, found)]

    def _encode(
        self, faces: Sequence[tuple[Photo, Face]], watch: Stopwatch
    ) -> tuple[np.ndarray, list[FaceQuality | None]]:
        """Embeddings of faces (full-image coordinates) of photos, in one batch, and their quality.
        A face small in what detection saw is aligned from its region decoded again, with its
        landmarks found again there: found on the coarse pixels, they are what limits the
        alignment. Quality is measured on the face as found in the full photo's pixels."""
        views = []
        for photo, face in faces:
            pixels, local = photo.view(face, self.align_side)
            if pixels is not photo.pixels:
                found = max(self.detect([pixels])[0], key=local.iou, default=None)
                if found is not None and found.iou(local) >= SAME_FACE_IOU:
                    local = found
            views.append((pixels, local))
        watch.lap("align")  # the finer pixels and landmarks of small faces are found here
        vectors, stages, signals = self.encode(views)
        watch.add(stages)
        started = time.perf_counter()
        qualities = [self._quality(face, chip) for (_, face), chip in zip(faces, signals or [None] * len(faces))]
        watch.add({"quality": (time.perf_counter() - started) * 1000})
        return vectors, qualities


def _check_quality(quality: FaceQuality | None, min_quality: float | None, label: str) -> None:
    if min_quality is not None and quality is not None and quality.score < min_quality:
        reasons = ", ".join(quality.reasons) or "no single measure is to blame"
        raise LowQuality(f"the face's quality {quality.score:.2f} ({quality.level}) is below the required "
                         f"{min_quality:.2f}: {reasons}", label)


def _chosen(faces: list[Face], photo: Photo, policy: str, label: str) -> FaceChoice:
    try:
        return choose_face(faces, policy, photo.size)
    except InputError as error:
        raise error.about(label) from None


def _stages(watch: Stopwatch) -> dict[str, float]:
    return {stage: watch.ms.get(stage, 0.0) for stage in ("detect", "align", "embed", "quality")}
