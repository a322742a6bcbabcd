"""Response shapes, each made from the model side's results by one `of` constructor."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model.card import EncoderCard, OperatingPoint
from model.faces.quality import FaceQuality
from model.types import LANDMARK_NAMES, Face, SelectionPolicy
from model.verify.decision import Verdict
from model.types import EmbeddingModel, InferenceMode
from model.verify.results import FaceEmbedding, Verification


class Box(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class Point(BaseModel):
    x: float
    y: float


def _box(face: Face) -> Box:
    x1, y1, x2, y2 = (round(float(value), 2) for value in face.box)
    return Box(x1=x1, y1=y1, x2=x2, y2=y2)


def _landmarks(face: Face) -> dict[str, Point]:
    return {name: Point(x=round(float(x), 2), y=round(float(y), 2)) for name, (x, y) in zip(LANDMARK_NAMES, face.landmarks)}


class QualityResponse(BaseModel):
    """How far the face can be trusted (model.faces.quality): the chance a genuine comparison with a
    good photo is accepted at far_1e-3, its level, what is wrong, and the measures behind it."""

    score: float
    level: Literal["low", "medium", "high"]
    reasons: list[str] = Field(description="small_face, extreme_pose, blurry, dark, overexposed, low_confidence, "
                               "weak_identity")
    eye_distance: float = Field(description="pixels between the eyes, in the uploaded image")
    yaw: float = Field(description="degrees, estimated from the landmarks")
    pitch: float = Field(description="degrees, estimated from the landmarks")
    roll: float = Field(description="degrees")
    sharpness: float | None = Field(description="variance of the aligned face's Laplacian")
    brightness: float | None = Field(description="mean grey level of the aligned face, 0..1")
    detection_score: float

    @classmethod
    def of(cls, quality: FaceQuality | None) -> QualityResponse | None:
        if quality is None:
            return None
        m = quality.measures
        return cls(score=quality.score, level=quality.level, reasons=list(quality.reasons),
                   eye_distance=round(m.eye_distance, 2), yaw=round(m.yaw, 1), pitch=round(m.pitch, 1),
                   roll=round(m.roll, 1), sharpness=None if m.sharpness is None else round(m.sharpness, 1),
                   brightness=None if m.brightness is None else round(m.brightness, 3),
                   detection_score=round(m.detection_score, 4))


class FaceSummary(BaseModel):
    """The face an answer is about, in the uploaded image's (upright) pixel coordinates."""

    box: Box
    landmarks: dict[str, Point] = Field(description="left/right as seen in the image")
    detection_score: float
    faces_detected: int = Field(description="faces found in the image; the policy chose this one")
    ambiguous: bool = Field(False, description="another face was nearly as likely the person the photo is of "
                            "(its box is runner_up); face_policy=reject refuses such images")
    runner_up: Box | None = Field(None, description="of the other faces, the one most likely the photo's subject")
    quality: QualityResponse | None = Field(None, description="null where the encoder has no quality model")

    @classmethod
    def of(cls, chosen: FaceEmbedding) -> FaceSummary:
        face = chosen.face
        return cls(
            box=_box(face),
            landmarks=_landmarks(face),
            detection_score=round(float(face.score), 4),
            faces_detected=int(chosen.faces_detected),
            ambiguous=chosen.ambiguous,
            runner_up=_box(chosen.runner_up) if chosen.runner_up else None,
            quality=QualityResponse.of(chosen.quality),
        )


class FaceMatch(BaseModel):
    """One face of the searched image under face_policy=all, and its comparison."""

    box: Box
    landmarks: dict[str, Point]
    detection_score: float
    distance: float
    same: bool
    probability_same: float | None
    quality: QualityResponse | None = None

    @classmethod
    def of(cls, face: Face, verdict: Verdict, quality: FaceQuality | None = None) -> FaceMatch:
        return cls(box=_box(face), landmarks=_landmarks(face), detection_score=round(float(face.score), 4),
                   distance=round(verdict.distance, 6), same=verdict.same, probability_same=verdict.probability_same,
                   quality=QualityResponse.of(quality))


class EmbeddingModelRef(BaseModel):
    """What made an embedding; /verify compares only embeddings of the model serving."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200)
    version: str = Field(max_length=200)
    inference: InferenceMode = Field(description="plain, or flip (mirror test-time augmentation)")

    @classmethod
    def of(cls, made_by: EmbeddingModel) -> EmbeddingModelRef:
        return cls(name=made_by.name, version=made_by.version, inference=made_by.inference)

    def to_model(self) -> EmbeddingModel:
        return EmbeddingModel(self.name, self.version, self.inference)


class ModelRef(BaseModel):
    name: str
    version: str

    @classmethod
    def of(cls, card: EncoderCard) -> ModelRef:
        return cls(name=card.name, version=card.version)


class OperatingPointInfo(BaseModel):
    name: str
    threshold: float
    far: float = Field(description="false-accept rate measured on held-out identities")
    frr: float = Field(description="false-reject rate measured on held-out identities")
    description: str

    @classmethod
    def of(cls, point: OperatingPoint) -> OperatingPointInfo:
        return cls(
            name=point.name, threshold=point.threshold, far=point.far, frr=point.frr, description=point.description
        )


class Timings(BaseModel):
    decode: float
    detect: float
    align: float
    embed: float
    quality: float = 0.0
    total: float


class VerifyFaces(BaseModel):
    """The face compared on each side; null where the side was given as an embedding."""

    image1: FaceSummary | None
    image2: FaceSummary | None


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


class VerifyResponse(BaseModel):
    same: bool
    distance: float = Field(description="Euclidean distance between the L2-normalised embeddings (0..2)")
    threshold: float
    operating_point: OperatingPointInfo | None = Field(description="null when an explicit threshold was given")
    probability_same: float | None = Field(description="calibrated P(same person); null if not calibrated")
    faces: VerifyFaces
    matches_in: Literal["image1", "image2"] | None = Field(
        description="face_policy=all: the image whose every face was compared; null otherwise"
    )
    matches: list[FaceMatch] | None = Field(
        description="face_policy=all: each face of that image (at most max_faces, the largest), best match "
        "first; same, distance and faces above are the best match's"
    )
    model: ModelRef
    timings_ms: Timings
    request_id: str

    @classmethod
    def of(cls, result: Verification, decode_ms: float, card: EncoderCard, state: Any) -> VerifyResponse:
        """From a Verification and the request's state (id, arrival time)."""
        verdict = result.verdict
        first, second = (FaceSummary.of(side) if side.face is not None else None for side in result.faces)
        return cls(
            same=verdict.same,
            distance=round(verdict.distance, 6),
            threshold=verdict.threshold,
            operating_point=OperatingPointInfo.of(verdict.operating_point) if verdict.operating_point else None,
            probability_same=verdict.probability_same,
            faces=VerifyFaces(image1=first, image2=second),
            matches_in=None if result.matches_in is None else ("image1", "image2")[result.matches_in],
            matches=None if result.matches is None else [FaceMatch.of(m.face, m.verdict, m.quality)
                                                         for m in result.matches],
            model=ModelRef.of(card),
            timings_ms=Timings(decode=decode_ms, **result.timings_ms, total=elapsed_ms(state.started)),
            request_id=state.request_id,
        )


class Embedding(BaseModel):
    """Send it back unchanged as embedding1 or embedding2 of /verify."""

    embedding: list[float] = Field(description="L2-normalised; compare with Euclidean distance")
    dim: int
    model: EmbeddingModelRef
    face: FaceSummary


class EmbedResponse(BaseModel):
    embeddings: list[Embedding] = Field(description="one per image, in request order")
    model: ModelRef
    timings_ms: Timings
    request_id: str

    @classmethod
    def of(
        cls, faces: list[FaceEmbedding], timings: dict[str, float], card: EncoderCard, made_by: EmbeddingModel,
        state: Any,
    ) -> EmbedResponse:
        model = EmbeddingModelRef.of(made_by)
        return cls(
            embeddings=[
                Embedding(embedding=chosen.embedding.tolist(), dim=len(chosen.embedding), model=model,
                          face=FaceSummary.of(chosen))
                for chosen in faces
            ],
            model=ModelRef.of(card),
            timings_ms=Timings(**timings, total=elapsed_ms(state.started)),
            request_id=state.request_id,
        )


class LiveResponse(BaseModel):
    status: Literal["live"] = "live"


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model: ModelRef
    storage: Literal["ok", "starting", "unavailable", "off"] = Field(
        description="the subject database: ok, starting (not reached yet), unavailable, or off (not configured)"
    )


class QualityInfo(BaseModel):
    version: str
    levels: dict[str, float] = Field(description="the lowest score of each level (low: below medium)")
    reasons: dict[str, list[dict[str, Any]]] = Field(description="each reason code's rules: a measure past a threshold")
    min_quality: float | None = Field(description="the service's floor for probes (/verify, /embed); null: none")
    enrol_min_quality: float | None = Field(description="the floor for enrolment")


class SubjectPointInfo(OperatingPointInfo):
    templates: int = Field(description="calibrated for a subject of this many templates (and more, up to the next)")


class SubjectsInfo(BaseModel):
    """How probes are judged against enrolled subjects (POST /galleries/{g}/subjects/{s}/verify)."""

    storage: str = Field(description="sqlite or postgresql")
    rule: str | None = Field(description="how a probe is scored against a subject's templates; null: uncalibrated")
    default_operating_point: str | None
    enrol_operating_point: str = Field(description="a new face must match the subject's others at this point")
    operating_points: list[SubjectPointInfo] = Field(description="per number of templates, with held-out rates")
    max_templates_per_subject: int
    search: dict[str, Any] | None = Field(description="1:N search: FPIR targets, the rule for a gallery's size, and "
                                          "FNIR/FPIR/rank-1 measured on LFW galleries; null: uncalibrated")


class GroupServiceInfo(BaseModel):
    """How POST /group groups a batch (model.verify.grouping), and its limits."""

    rule: str
    threshold: float
    link_far: float = Field(description="the share of impostor pairs (two people) closer than the threshold")
    max_group_images: int
    max_group_faces: int


class ServiceInfo(BaseModel):
    """The settings that change answers, so a client can tell what a response was made with."""

    flip_tta: bool
    precision: str = Field(description="what the encoder computes in")
    engine: str = Field(description="what runs the networks: torch, or openvino compiled for this CPU")
    detector: dict[str, Any] = Field(description="the face detector and its settings")
    face_policy: SelectionPolicy
    default_operating_point: str | None
    operating_points: list[OperatingPointInfo] = Field(description="those of the active inference mode")
    min_face_size: int
    max_faces: int = Field(description="most faces face_policy=all compares (the largest)")
    max_upload_bytes: int
    max_image_pixels: int
    max_embed_images: int
    grouping: GroupServiceInfo | None = Field(description="POST /group's calibrated rule; null where the card has none")
    subjects: SubjectsInfo | None = Field(description="null where storage is off")
    quality: QualityInfo | None = Field(description="null where the encoder has no quality model")


class InfoResponse(BaseModel):
    model: dict[str, Any] = Field(description="the encoder card (model.json) as shipped")
    service: ServiceInfo

    @classmethod
    def of(cls, verifier: Any, settings: Any, storage: Any) -> InfoResponse:
        calibration = verifier.calibration
        subjects = verifier.card.subjects_for(verifier.flip_tta)
        return cls(
            model=verifier.card.to_json(),
            service=ServiceInfo(
                flip_tta=verifier.flip_tta,
                precision=verifier.precision,
                engine=verifier.engine,
                detector=verifier.detector.settings,
                face_policy=verifier.face_policy,
                default_operating_point=calibration.default if calibration else None,
                operating_points=[OperatingPointInfo.of(p) for p in calibration.operating_points.values()]
                if calibration
                else [],
                min_face_size=settings.min_face_size,
                max_faces=settings.max_faces,
                max_upload_bytes=settings.max_upload_bytes,
                max_image_pixels=settings.max_image_pixels,
                max_embed_images=settings.max_embed_images,
                grouping=None if verifier.card.grouping_for(verifier.flip_tta) is None else GroupServiceInfo(
                    **verifier.card.grouping_for(verifier.flip_tta).model_dump(include={"rule", "threshold",
                                                                                         "link_far"}),
                    max_group_images=settings.max_group_images, max_group_faces=settings.max_group_faces),
                quality=None if verifier.card.quality is None else QualityInfo(
                    version=verifier.card.quality.version, levels=verifier.card.quality.levels,
                    reasons={code: [rule.model_dump(exclude_none=True) for rule in rules]
                             for code, rules in verifier.card.quality.reasons.items()},
                    min_quality=verifier.quality_floor(settings.min_quality),
                    enrol_min_quality=verifier.quality_floor(settings.enrol_min_quality),
                ),
                subjects=None if storage is None else SubjectsInfo(
                    storage=storage.url_scheme,
                    rule=subjects.rule if subjects else None,
                    default_operating_point=subjects.default if subjects else None,
                    enrol_operating_point=settings.enrol_operating_point,
                    operating_points=[SubjectPointInfo(**OperatingPointInfo.of(point).model_dump(), templates=k)
                                      for k, points in (subjects.templates.items() if subjects else ())
                                      for point in points.values()],
                    max_templates_per_subject=settings.max_templates_per_subject,
                    search=None if verifier.card.search_for(verifier.flip_tta) is None
                    else verifier.card.search_for(verifier.flip_tta).model_dump(mode="json"),
                ),
            ),
        )
