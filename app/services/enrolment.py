"""Enrolled subjects and the model: enrolment (images or embeddings), import, a subject read with what
the model serving can compare, and a probe verified against a subject.

Only templates of the serving model and inference mode are ever compared (`usable`); the others stay
listed, so a client can tell who needs enrolling again after a model change.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from starlette.concurrency import run_in_threadpool

from app.errors import ServiceError, invalid_request
from app.schemas.galleries import EnrolUploads, ImportedSubject, ProbeUploads
from app.security import Principal
from app.services.duplicates import DuplicateService
from app.services.galleries import within_reach
from app.services.keys import audit_event
from app.services.verification import NO_TIMINGS, VerificationService
from app.settings import Settings
from app.storage.audit import AuditEntry
from app.storage.base import (
    AuditQuery,
    Conflict,
    DuplicateCheck,
    NewTemplate,
    PossibleDuplicate,
    Storage,
    Subject,
    Template,
)
from model.card import SubjectRule
from model.verify.decision import Decision, Verdict
from model.verify.results import FaceEmbedding
from model.verify.subject_scores import subject_distances
from model.verify.verifier import Verifier


@dataclass(frozen=True)
class StoredSubject:
    """A subject with the ids of the templates the model serving compares."""

    subject: Subject
    usable: set[str]


@dataclass(frozen=True)
class Enrolment:
    """What an enrolment stored: the subject after it, the new templates, and what they came from
    (the faces of the images; the embeddings given, which have none)."""

    subject: StoredSubject
    added: list[Template]
    faces: list[FaceEmbedding]
    embeddings_given: int
    checked_against: int
    timings: dict[str, float]
    possible_duplicates: list[PossibleDuplicate]  # flagged by the duplicate check's report mode


@dataclass(frozen=True)
class Export:
    """Everything stored about a subject, and the audit entries that name it."""

    subject: StoredSubject
    audit: list[AuditEntry]
    embeddings: bool


@dataclass(frozen=True)
class SubjectVerification:
    """A probe judged against a subject's usable templates together (the card's subject rule)."""

    verdict: Verdict
    rule: SubjectRule
    subject: Subject
    compared: list[Template]
    distances: np.ndarray  # the probe's distance to each compared template
    probe: FaceEmbedding
    calibrated_for: int | None  # the number of templates of the operating point used
    timings: dict[str, float]


def usable(verifier: Verifier, templates: Sequence[Template]) -> list[Template]:
    """The templates this verifier may compare: same encoder, version and inference mode."""
    serving = verifier.embedding_model.space
    return [template for template in templates if template.model.space == serving]


def upload_hash(salt: bytes, data: bytes) -> str:
    """A keyed hash of an uploaded file: equal files are recognised, and no file can be looked up
    from it without the database's salt."""
    return hmac.new(salt, data, hashlib.sha256).hexdigest()


def new_templates(verifier: Verifier, faces: Sequence[FaceEmbedding], hashes: Sequence[str | None]) -> list[NewTemplate]:
    model = verifier.embedding_model
    templates = []
    for face, digest in zip(faces, hashes):
        found = face.face
        templates.append(NewTemplate(
            embedding=np.asarray(face.embedding, np.float32), model=model,
            box=tuple(round(float(v), 2) for v in found.box) if found else None,
            landmarks=tuple((round(float(x), 2), round(float(y), 2)) for x, y in found.landmarks) if found else None,
            detection_score=round(float(found.score), 4) if found else None,
            upload_hash=digest,
        ))
    return templates


class MatchesSubject:
    """The enrolment check (app.storage.base.EnrolmentCheck), run inside the enrolment's transaction:
    each new face must match, at the subject-level `operating_point`, the subject's usable templates
    together with the request's other new faces (so a first enrolment of several photos is checked
    too); else Conflict subject_mismatch. `checked_against` records the most templates one face met."""

    def __init__(self, verifier: Verifier, new: Sequence[NewTemplate], operating_point: str, allow_mismatch: bool):
        self.verifier = verifier
        self.new = new
        self.operating_point = operating_point
        self.allow_mismatch = allow_mismatch
        self.checked_against = 0

    def __call__(self, stored: Sequence[Template]) -> None:
        if self.allow_mismatch:
            return
        reference = [t.embedding for t in usable(self.verifier, stored)]
        for index, template in enumerate(self.new):
            others = reference + [t.embedding for j, t in enumerate(self.new) if j != index]
            if not others:
                continue
            decision = self.verifier.subject_decision(len(others), operating_point=self.operating_point)
            score, _ = subject_distances(self.verifier.subject_rule, template.embedding, np.stack(others))
            self.checked_against = max(self.checked_against, len(others))
            verdict = decision.judge(score)
            if not verdict.same:
                which = f"face {index + 1} of the request" if len(self.new) > 1 else "the new face"
                raise Conflict("subject_mismatch", f"{which} does not match the subject's other faces at "
                               f"{self.operating_point} (score {score:.4f} > threshold {verdict.threshold:.4f}); "
                               "set allow_mismatch to enrol it anyway")


def duplicate_identity(matches: Sequence[PossibleDuplicate]) -> ServiceError:
    named = ", ".join(f"{match.subject!r} (score {match.score:.4f} <= {match.threshold:.4f})" for match in matches[:3])
    return ServiceError(
        "duplicate_identity", f"the new subject's faces match {len(matches)} subject(s) of the gallery at its search "
        f"operating point: {named}; enrol with duplicate_check=report to store and flag it anyway",
        details={"matches": [vars(match) for match in matches]})


def judge_probe(
    verifier: Verifier, probe: FaceEmbedding, compared: Sequence[Template], decision: Decision
) -> tuple[Verdict, np.ndarray]:
    """The probe against the subject's usable templates: the verdict on the subject-level score,
    and the probe's distance to each template."""
    score, distances = subject_distances(verifier.subject_rule, probe.embedding, np.stack([t.embedding for t in compared]))
    return decision.judge(score), distances


@dataclass(frozen=True)
class EnrolmentService:
    storage: Storage
    verification: VerificationService
    upload_salt: bytes
    settings: Settings
    duplicates: DuplicateService

    @property
    def verifier(self) -> Verifier:
        return self.verification.verifier

    async def get_subject(self, principal: Principal, gallery_id: str, subject_id: str) -> StoredSubject:
        """The subject and its templates (never the embeddings), with those the model serving compares."""
        subject = await run_in_threadpool(self.storage.get_subject, within_reach(principal, gallery_id), subject_id)
        return StoredSubject(subject, {t.id for t in usable(self.verifier, subject.templates)})

    async def enrol(self, principal: Principal, gallery_id: str, subject_id: str, uploads: EnrolUploads) -> Enrolment:
        """The chosen face of each image and each embedding given back, stored in one transaction:
        all or none, after the duplicate check of a new subject's first faces (check_duplicates),
        the enrolment check (MatchesSubject) and the store's own (duplicate_face, subject_full)."""
        # 404 before any inference
        subject = await run_in_threadpool(self.storage.get_subject, within_reach(principal, gallery_id), subject_id)
        options = uploads.options
        given = [self.verification.accept(item, f"embeddings[{index}]") for index, item in enumerate(uploads.embeddings)]
        faces_wanted = self.verification.face_options(options.face_policy, options.min_quality,
                                                       self.settings.enrol_min_quality)
        faces, timings = [], dict(NO_TIMINGS)
        if uploads.images:
            faces, timings = await self.verification.embed_images("enrol", uploads.images, faces_wanted)
        hashes = [upload_hash(self.upload_salt, data) for data in uploads.images] + [None] * len(given)
        templates = new_templates(self.verifier, faces + given, hashes)
        check = MatchesSubject(self.verifier, templates, self.settings.enrol_operating_point, options.allow_mismatch)
        possible = await self.check_duplicates(principal, subject, templates, options.duplicate_check)
        event = replace(audit_event(principal, "subject.enrol", gallery_id, subject_id, 201,
                                    bool(possible) if possible is not None else None), consent_ref=options.consent_ref)
        added = await run_in_threadpool(self.storage.add_templates, gallery_id, subject_id, templates, check,
                                        self.settings.max_templates_per_subject, event, options.consent_ref,
                                        possible or ())
        return Enrolment(await self.get_subject(principal, gallery_id, subject_id), added, faces, len(given),
                         check.checked_against, timings, possible or [])

    async def check_duplicates(self, principal: Principal, subject: Subject, templates: list[NewTemplate],
                               requested: DuplicateCheck | None) -> list[PossibleDuplicate] | None:
        """Before a new subject's first faces are stored: the subjects they match (None where the
        check does not run: it is off, or the subject has faces already). Under `refuse` a match is
        409 duplicate_identity, in the audit trail before it is answered; under `report` the
        subject is stored and flagged with them."""
        if subject.template_count:
            return None
        mode = requested or (await run_in_threadpool(self.storage.get_gallery, subject.gallery_id)).duplicate_check
        if mode == "off":
            return None
        possible = await run_in_threadpool(self.duplicates.possible_duplicates, subject.gallery_id, templates)
        if possible and mode == "refuse":
            await run_in_threadpool(self.storage.record, audit_event(
                principal, "subject.duplicates", subject.gallery_id, subject.id, 409, True))
            raise duplicate_identity(possible)
        return possible

    async def clear_duplicates(self, principal: Principal, gallery_id: str, subject_id: str) -> Subject:
        """The subject's duplicate flag removed: a reviewer found it to be another person."""
        event = audit_event(principal, "subject.clear_duplicates", within_reach(principal, gallery_id), subject_id, 200)
        return await run_in_threadpool(self.storage.clear_duplicates, gallery_id, subject_id, event)

    async def import_subjects(self, principal: Principal, gallery_id: str, subjects: Sequence[ImportedSubject]) -> int:
        """New subjects with embeddings from /embed, all in one transaction (a taken id refuses the
        whole import); each embedding is checked against the model serving. The templates stored."""
        within_reach(principal, gallery_id)
        model = self.verifier.embedding_model
        batch = [
            (subject.id, [NewTemplate(self.verification.accept(item, f"subjects[{i}].embeddings[{j}]").embedding, model)
                          for j, item in enumerate(subject.embeddings)])
            for i, subject in enumerate(subjects)
        ]
        if len({subject_id for subject_id, _ in batch}) != len(batch):
            raise invalid_request("a subject id is given twice in the import")
        event = audit_event(principal, "gallery.import", gallery_id, None, 201)
        consent = {subject.id: subject.consent_ref for subject in subjects if subject.consent_ref}
        return await run_in_threadpool(self.storage.import_subjects, gallery_id, batch, event, consent)

    async def export(self, principal: Principal, gallery_id: str, subject_id: str, embeddings: bool) -> Export:
        """Everything stored about the subject, as the person it is of may ask (GDPR's access); the
        embeddings only where asked for, by an admin. The export is audited."""
        if embeddings and not principal.allows("admin"):
            raise ServiceError("forbidden", "exporting embeddings needs the 'admin' scope")
        stored = await self.get_subject(principal, gallery_id, subject_id)
        entries = await run_in_threadpool(self.storage.audit_entries, AuditQuery(gallery_id, subject_id), 10_000)
        await run_in_threadpool(self.storage.record,
                                audit_event(principal, "subject.export", gallery_id, subject_id, 200))
        return Export(stored, entries, embeddings)

    async def verify(self, principal: Principal, gallery_id: str, subject_id: str,
                     uploads: ProbeUploads) -> SubjectVerification:
        """Is the probe this subject? Scored against all the subject's usable templates together, and
        decided at an operating point calibrated for that many (or an explicit threshold). The
        decision is in the audit trail before it is answered."""
        subject = await run_in_threadpool(self.storage.get_subject, within_reach(principal, gallery_id), subject_id)
        compared = usable(self.verifier, subject.templates)
        if not subject.templates:
            raise ServiceError("subject_empty", f"subject {subject_id!r} has no enrolled faces yet")
        if not compared:
            raise ServiceError("reenrolment_needed", f"subject {subject_id!r} was enrolled with another model or "
                               "inference mode; enrol new photos of it")
        options = uploads.options
        decision = self.verifier.subject_decision(len(compared), options.threshold, options.operating_point)
        embedded, timings = await self.verification.probe(uploads)
        verdict, distances = judge_probe(self.verifier, embedded, compared, decision)
        calibration = self.verifier.card.subjects_for(self.verifier.flip_tta)
        calibrated_for = calibration.calibrated_k(len(compared)) if calibration and verdict.operating_point else None
        await run_in_threadpool(self.storage.record,
                                audit_event(principal, "subject.verify", gallery_id, subject_id, 200, verdict.same))
        return SubjectVerification(verdict, self.verifier.subject_rule, subject, compared, distances, embedded,
                                   calibrated_for, timings)
