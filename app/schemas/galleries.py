"""Request and response shapes of galleries, subjects, their faces (templates) and subject verification."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.requests import EmbeddingInput, QualityFloor, VerifyOptions, VerifySide
from app.schemas.responses import Box, EmbeddingModelRef, FaceSummary, ModelRef, OperatingPointInfo, Point, Timings, elapsed_ms
from app.storage.base import (
    ID_PATTERN,
    Deleted,
    DuplicateCheck,
    Expired,
    Gallery,
    Page,
    PossibleDuplicate,
    Retention,
    Subject,
    Template,
)
from model.card import EncoderCard, SubjectRule
from model.types import LANDMARK_NAMES, EmbeddingModel, SelectionPolicy

if TYPE_CHECKING:  # the services' results, which the responses are made of (the services read these requests)
    from app.services.enrolment import Enrolment, Export, SubjectVerification
    from app.services.search import Search

ID_REGEX = f"^{ID_PATTERN.pattern}$"
ID_FIELD = Field(pattern=ID_REGEX, description="1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")


def timestamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def optional_timestamp(seconds: float | None) -> str | None:
    return None if seconds is None else timestamp(seconds)


def cursor_of(page: Page) -> str | None:
    """An opaque cursor: the last id of the page, base64url."""
    return base64.urlsafe_b64encode(page.next_after.encode()).decode().rstrip("=") if page.next_after else None


def after_cursor(cursor: str | None) -> str | None:
    """The id a cursor stands for; ValueError for one this service did not make."""
    if not cursor:
        return None
    try:
        after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("cursor is not one this service returned") from None
    if not ID_PATTERN.fullmatch(after):
        raise ValueError("cursor is not one this service returned")
    return after


# -- requests ----------------------------------------------------------------------------------


CONSENT_REF = Field(None, min_length=1, max_length=256,
                    description="an opaque reference to the person's release (e.g. the id of a signed form): "
                    "stored, returned and audited")


class GalleryPolicy(BaseModel):
    """How long the gallery keeps a subject, and whether enrolment needs a consent reference."""

    model_config = ConfigDict(extra="forbid")

    max_inactive_days: float | None = Field(
        None, gt=0, le=36500, description="delete a subject this long after its last successful verification, "
        "search match or enrolment; null: no such limit")
    max_age_days: float | None = Field(None, gt=0, le=36500, description="delete a subject this long after its "
                                       "first enrolment; null: no such limit")
    require_consent: bool = Field(False, description="refuse an enrolment without a consent_ref (422 consent_required)")
    duplicate_check: DuplicateCheck = Field(
        "off", description="before a new subject's first faces are stored, search the gallery: 'refuse' answers a "
        "match 409 duplicate_identity, 'report' stores and flags the subject (possible_duplicates); an enrolment "
        "may ask for another")

    def retention(self) -> Retention:
        return Retention(self.max_inactive_days, self.max_age_days)


class CreateGallery(GalleryPolicy):
    id: str = ID_FIELD


class CreateSubject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = ID_FIELD


class EnrolOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    face_policy: SelectionPolicy | None = Field(
        None, description="which face of an image to enrol when it has several (default: the service's)"
    )
    allow_mismatch: bool = Field(
        False, description="enrol even where a new face does not match the subject's other templates at the "
        "enrolment operating point (see /info)",
    )
    min_quality: QualityFloor | None = Field(
        None, description="refuse (422 low_quality) a face whose quality is below this score or level; default: "
        "the service's enrolment floor (see /info), stricter than for probes",
    )
    consent_ref: str | None = CONSENT_REF
    duplicate_check: DuplicateCheck | None = Field(
        None, description="in place of the gallery's duplicate check (off, refuse or report), for this enrolment")


class EnrolJSON(EnrolOptions):
    images: list[str] = Field([], description="base64 images (data: URL prefixes are accepted)")
    embeddings: list[EmbeddingInput] = Field([], description="embedding objects from /embed, in place of images")


class SubjectVerifyOptions(VerifyOptions):
    face_policy: SelectionPolicy | None = Field(  # type: ignore[assignment]
        None, description="which face of the image to use when it has several (default: the service's)"
    )


MAX_IMPORT_SUBJECTS = 1000


class ImportedSubject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = ID_FIELD
    embeddings: list[EmbeddingInput] = Field(min_length=1, max_length=100)
    consent_ref: str | None = CONSENT_REF


class ImportJSON(BaseModel):
    """Subjects with their embeddings from /embed of this model, stored in one transaction without
    enrolment checks: moving a gallery over, or filling one in bulk."""

    model_config = ConfigDict(extra="forbid")

    subjects: list[ImportedSubject] = Field(min_length=1, max_length=MAX_IMPORT_SUBJECTS)


class ImportResponse(BaseModel):
    subjects: int
    templates: int
    request_id: str


class SubjectVerifyJSON(SubjectVerifyOptions):
    image: str | None = Field(None, description="base64 image (a data: URL prefix is accepted)")
    embedding: EmbeddingInput | None = Field(None, description="in place of image: an embedding from /embed")


class SearchOptions(SubjectVerifyOptions):
    top_k: int = Field(5, ge=1, le=100, description="candidates to return, nearest first")
    operating_point: str | None = Field(
        None, min_length=1, max_length=64, description="an FPIR target by name (see /info); default fpir_1e-3"
    )


class SearchJSON(SearchOptions):
    image: str | None = Field(None, description="base64 image (a data: URL prefix is accepted)")
    embedding: EmbeddingInput | None = Field(None, description="in place of image: an embedding from /embed")


@dataclass(frozen=True)
class EnrolUploads:
    images: list[bytes]
    embeddings: list[EmbeddingInput]
    options: EnrolOptions


@dataclass(frozen=True)
class ProbeUploads:
    probe: VerifySide
    options: Any  # SubjectVerifyOptions or SearchOptions


# -- responses ---------------------------------------------------------------------------------


class GalleryResponse(BaseModel):
    id: str
    created_at: str
    subjects: int
    templates: int
    max_inactive_days: float | None
    max_age_days: float | None
    require_consent: bool
    duplicate_check: DuplicateCheck

    @classmethod
    def of(cls, gallery: Gallery) -> GalleryResponse:
        return cls(id=gallery.id, created_at=timestamp(gallery.created_at), subjects=gallery.subject_count,
                   templates=gallery.template_count, max_inactive_days=gallery.retention.max_inactive_days,
                   max_age_days=gallery.retention.max_age_days, require_consent=gallery.require_consent,
                   duplicate_check=gallery.duplicate_check)


class GalleryList(BaseModel):
    galleries: list[GalleryResponse]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class TemplateModelRef(EmbeddingModelRef):
    """What made a stored template, and the arithmetic it ran in."""

    precision: str

    @classmethod
    def of(cls, made_by: EmbeddingModel) -> TemplateModelRef:
        return cls(**vars(made_by))


class StoredFace(BaseModel):
    box: Box
    landmarks: dict[str, Point] | None
    detection_score: float | None


class TemplateResponse(BaseModel):
    """A stored template: what made it and the face it came from; the embedding itself is not shown."""

    id: str
    created_at: str
    model: TemplateModelRef
    usable: bool = Field(description="made by the model and inference mode serving now, so it is compared")
    face: StoredFace | None = Field(description="null where it was enrolled from an embedding")

    @classmethod
    def of(cls, template: Template, usable: bool) -> TemplateResponse:
        face = None
        if template.box is not None:
            x1, y1, x2, y2 = template.box
            landmarks = ({name: Point(x=x, y=y) for name, (x, y) in zip(LANDMARK_NAMES, template.landmarks)}
                         if template.landmarks else None)
            face = StoredFace(box=Box(x1=x1, y1=y1, x2=x2, y2=y2), landmarks=landmarks,
                              detection_score=template.detection_score)
        return cls(id=template.id, created_at=timestamp(template.created_at),
                   model=TemplateModelRef.of(template.model), usable=usable, face=face)


class DuplicateMatch(BaseModel):
    subject: str
    score: float = Field(description="the distance to the subject's centroid (lower = more alike)")
    threshold: float = Field(description="the search threshold it was judged at: its templates, the gallery's size")

    @classmethod
    def of(cls, match: PossibleDuplicate) -> DuplicateMatch:
        return cls(**vars(match))


class SubjectSummary(BaseModel):
    id: str
    created_at: str
    updated_at: str
    templates: int
    last_active_at: str | None = Field(description="its last enrolment, matched verification or search match")
    expires_at: str | None = Field(description="when the gallery's retention deletes it; null: kept until deleted")
    consent_ref: str | None
    possible_duplicates: list[DuplicateMatch] = Field(
        description="subjects its first faces matched when the duplicate check reported rather than refused; "
        "empty where none (or once a reviewer cleared them)")

    @classmethod
    def of(cls, subject: Subject) -> SubjectSummary:
        return cls(id=subject.id, created_at=timestamp(subject.created_at), updated_at=timestamp(subject.updated_at),
                   templates=subject.template_count, last_active_at=optional_timestamp(subject.last_active_at),
                   expires_at=optional_timestamp(subject.expires_at), consent_ref=subject.consent_ref,
                   possible_duplicates=[DuplicateMatch.of(match) for match in subject.possible_duplicates])


class SubjectList(BaseModel):
    subjects: list[SubjectSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class SubjectResponse(SubjectSummary):
    gallery: str
    usable_templates: int = Field(description="templates of the model and inference mode serving now")
    needs_reenrolment: bool = Field(
        description="true where the subject has templates but none of the serving model: enrol new photos"
    )
    faces: list[TemplateResponse]

    @classmethod
    def of(cls, subject: Subject, usable: set[str]) -> SubjectResponse:  # type: ignore[override]
        return cls(
            **SubjectSummary.of(subject).model_dump(), gallery=subject.gallery_id,
            usable_templates=len(usable), needs_reenrolment=bool(subject.templates) and not usable,
            faces=[TemplateResponse.of(template, template.id in usable) for template in subject.templates],
        )


class EnrolResponse(BaseModel):
    subject: SubjectResponse
    added: list[TemplateResponse] = Field(description="the templates this request stored, in request order")
    faces: list[FaceSummary | None] = Field(description="the face enrolled from each input; null for an embedding")
    checked_against: int = Field(description="templates each new face was checked against (0: nothing to check, "
                                             "or allow_mismatch)")
    possible_duplicates: list[DuplicateMatch] = Field(
        description="subjects the new subject's faces matched under duplicate_check=report; the subject is flagged")
    timings_ms: Timings
    request_id: str

    @classmethod
    def of(cls, enrolment: Enrolment, state: Any) -> EnrolResponse:
        stored = enrolment.subject
        return cls(
            subject=SubjectResponse.of(stored.subject, stored.usable),
            added=[TemplateResponse.of(template, True) for template in enrolment.added],
            faces=[FaceSummary.of(face) for face in enrolment.faces] + [None] * enrolment.embeddings_given,
            checked_against=enrolment.checked_against,
            possible_duplicates=[DuplicateMatch.of(match) for match in enrolment.possible_duplicates],
            timings_ms=Timings(**enrolment.timings, total=elapsed_ms(state.started)),
            request_id=state.request_id,
        )


class DeletedCounts(BaseModel):
    galleries: int
    subjects: int
    templates: int


class DeletedResponse(BaseModel):
    deleted: DeletedCounts
    request_id: str

    @classmethod
    def of(cls, deleted: Deleted, state: Any) -> DeletedResponse:
        return cls(deleted=DeletedCounts(**vars(deleted)), request_id=state.request_id)


class SubjectOperatingPoint(OperatingPointInfo):
    templates: int = Field(description="the number of templates it was calibrated for")


class BestTemplate(BaseModel):
    id: str
    distance: float = Field(description="the probe's distance to this template alone")


class SubjectVerifyResponse(BaseModel):
    same: bool
    score: float = Field(description="the subject-level distance under `rule` (lower = more alike)")
    threshold: float
    rule: SubjectRule = Field(description="centroid: the distance to the normalised mean of the templates")
    operating_point: SubjectOperatingPoint | None = Field(description="null when an explicit threshold was given")
    gallery: str
    subject: str
    templates_compared: int
    templates_skipped: int = Field(description="templates of another model or inference mode, never compared")
    best_template: BestTemplate
    face: FaceSummary | None = Field(description="the probe's face; null where it was given as an embedding")
    model: ModelRef
    timings_ms: Timings
    request_id: str

    @classmethod
    def of(cls, result: SubjectVerification, card: EncoderCard, state: Any) -> SubjectVerifyResponse:
        verdict, compared, distances = result.verdict, result.compared, result.distances
        point = verdict.operating_point
        best = int(distances.argmin())
        return cls(
            same=verdict.same, score=round(verdict.distance, 6), threshold=verdict.threshold, rule=result.rule,
            operating_point=SubjectOperatingPoint(**OperatingPointInfo.of(point).model_dump(),
                                                  templates=result.calibrated_for) if point else None,
            gallery=result.subject.gallery_id, subject=result.subject.id, templates_compared=len(compared),
            templates_skipped=len(result.subject.templates) - len(compared),
            best_template=BestTemplate(id=compared[best].id, distance=round(float(distances[best]), 6)),
            face=FaceSummary.of(result.probe) if result.probe.face is not None else None, model=ModelRef.of(card),
            timings_ms=Timings(**result.timings, total=elapsed_ms(state.started)), request_id=state.request_id,
        )


class SearchCandidate(BaseModel):
    subject: str
    score: float = Field(description="the distance to the subject's centroid (lower = more alike)")
    threshold: float = Field(description="this subject's threshold: its number of templates and the gallery's size")
    same: bool = Field(description="score at or below threshold")
    templates: int


class SearchMatch(BaseModel):
    subject: str
    score: float


class MeasuredSearch(BaseModel):
    gallery_size: int
    fpir: float
    fnir: float
    rank1: float


class SearchOperatingPoint(BaseModel):
    name: str
    fpir: float = Field(description="the false-positive identification rate aimed at, for this gallery's size")
    extrapolated: bool = Field(description="true where the gallery is too large for the calibration to hold the "
                               "target: the strictest measured thresholds are used and the FPIR may be higher")
    measured: MeasuredSearch | None = Field(description="LFW's gallery of the nearest size: FPIR, FNIR, rank-1")


class SearchResponse(BaseModel):
    match: SearchMatch | None = Field(description="the nearest subject at or below its threshold; null: nobody enrolled")
    candidates: list[SearchCandidate]
    gallery: str
    gallery_size: int = Field(description="subjects with templates of the model serving")
    operating_point: SearchOperatingPoint | None = Field(description="null when an explicit threshold was given")
    face: FaceSummary | None
    model: ModelRef
    timings_ms: Timings
    request_id: str

    @classmethod
    def of(cls, search: Search, card: EncoderCard, state: Any) -> SearchResponse:
        decision, measured = search.decision, search.measured
        candidates = [SearchCandidate(subject=candidate.subject, score=round(candidate.score, 6),
                                      threshold=round(judged.verdict.threshold, 6), same=judged.verdict.same,
                                      templates=candidate.templates)
                      for candidate, judged in search.candidates]
        match = search.match
        point = None
        if decision.point is not None:
            target = measured.targets[decision.point] if measured else None
            point = SearchOperatingPoint(
                name=decision.point, fpir=decision.fpir, extrapolated=search.extrapolated,
                measured=None if measured is None else MeasuredSearch(
                    gallery_size=measured.gallery_size, fpir=target.fpir, fnir=target.fnir, rank1=measured.rank1))
        return cls(
            match=None if match is None else SearchMatch(subject=match.subject, score=round(match.score, 6)),
            candidates=candidates, gallery=search.gallery_id, gallery_size=search.gallery_size, operating_point=point,
            face=FaceSummary.of(search.probe) if search.probe.face is not None else None, model=ModelRef.of(card),
            timings_ms=Timings(**search.timings, total=elapsed_ms(state.started)), request_id=state.request_id,
        )


class ExpiringSubject(BaseModel):
    subject: str
    expires_at: str


class ExpiringResponse(BaseModel):
    """What the gallery's retention would delete by `at` (a dry run: nothing is deleted)."""

    gallery: str
    at: str
    subjects: list[ExpiringSubject]

    @classmethod
    def of(cls, gallery_id: str, at: float, expired: list[Expired]) -> ExpiringResponse:
        return cls(gallery=gallery_id, at=timestamp(at),
                   subjects=[ExpiringSubject(subject=item.subject_id, expires_at=timestamp(item.expires_at))
                             for item in expired])


class ExportedTemplate(TemplateResponse):
    embedding: list[float] | None = Field(None, description="only where asked for (embeddings=true), by an admin")


class SubjectExport(BaseModel):
    """Everything stored about a subject: its record, its templates' metadata (embeddings only on
    explicit request, with the admin scope), consent, expiry, and the audit entries that name it."""

    gallery: str
    subject: SubjectSummary
    faces: list[ExportedTemplate]
    audit: list[dict]
    request_id: str

    @classmethod
    def of(cls, export: Export, state: Any) -> SubjectExport:
        subject = export.subject.subject
        faces = [ExportedTemplate(**TemplateResponse.of(t, t.id in export.subject.usable).model_dump(),
                                  embedding=[float(v) for v in t.embedding] if export.embeddings else None)
                 for t in subject.templates]
        return cls(gallery=subject.gallery_id, subject=SubjectSummary.of(subject), faces=faces,
                   audit=[entry.to_json() for entry in export.audit], request_id=state.request_id)
