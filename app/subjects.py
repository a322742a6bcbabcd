"""What the subject routes do between the verifier and the store: templates from a request's faces,
the check that a new face is the subject's, and a probe judged against a subject.

Only templates of the serving model and inference mode are ever compared (`usable`); the others stay
listed, so a client can tell who needs enrolling again after a model change.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.storage.base import Conflict, EnrolmentCheck, NewTemplate, Template, TemplateModel
from model.verify.decision import Decision, Verdict
from model.verify.results import FaceEmbedding
from model.verify.subjects import subject_distances
from model.verify.verifier import Verifier


def template_model(verifier: Verifier) -> TemplateModel:
    made_by = verifier.embedding_model
    return TemplateModel(made_by.name, made_by.version, made_by.inference, verifier.precision)


def usable(verifier: Verifier, templates: Sequence[Template]) -> list[Template]:
    """The templates this verifier may compare: same encoder, version and inference mode."""
    made_by = verifier.embedding_model
    return [t for t in templates
            if (t.model.name, t.model.version, t.model.inference) == (made_by.name, made_by.version, made_by.inference)]


def upload_hash(salt: bytes, data: bytes) -> str:
    """A keyed hash of an uploaded file: equal files are recognised, and no file can be looked up
    from it without the database's salt."""
    return hmac.new(salt, data, hashlib.sha256).hexdigest()


def new_templates(verifier: Verifier, faces: Sequence[FaceEmbedding], hashes: Sequence[str | None]) -> list[NewTemplate]:
    model = template_model(verifier)
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


@dataclass
class EnrolmentCheckResult:
    checked_against: int = 0


def enrolment_check(
    verifier: Verifier, new: Sequence[NewTemplate], operating_point: str, allow_mismatch: bool,
    result: EnrolmentCheckResult,
) -> EnrolmentCheck:
    """Run inside the enrolment's transaction: each new face must match, at the subject-level
    `operating_point`, the subject's usable templates together with the request's other new faces
    (so a first enrolment of several photos is checked too); else Conflict subject_mismatch."""

    def check(stored: Sequence[Template]) -> None:
        if allow_mismatch:
            return
        reference = [t.embedding for t in usable(verifier, stored)]
        for index, template in enumerate(new):
            others = reference + [t.embedding for j, t in enumerate(new) if j != index]
            if not others:
                continue
            decision = verifier.subject_decision(len(others), operating_point=operating_point)
            score, _ = subject_distances(verifier.subject_rule, template.embedding, np.stack(others))
            result.checked_against = max(result.checked_against, len(others))
            verdict = decision.judge(score)
            if not verdict.same:
                which = f"face {index + 1} of the request" if len(new) > 1 else "the new face"
                raise Conflict("subject_mismatch", f"{which} does not match the subject's other faces at {operating_point} "
                               f"(score {score:.4f} > threshold {verdict.threshold:.4f}); set allow_mismatch to enrol "
                               "it anyway")

    return check


def judge_probe(
    verifier: Verifier, probe: FaceEmbedding, compared: Sequence[Template], decision: Decision
) -> tuple[Verdict, np.ndarray]:
    """The probe against the subject's usable templates: the verdict on the subject-level score,
    and the probe's distance to each template."""
    score, distances = subject_distances(verifier.subject_rule, probe.embedding, np.stack([t.embedding for t in compared]))
    return decision.judge(score), distances
