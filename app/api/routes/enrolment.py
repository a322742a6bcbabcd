"""A subject's faces: enrol images or embeddings, delete one; verify a probe against the subject."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from app.api.bodies import probe_docs, read_enrol_request, read_probe_request, request_docs
from app.api.deps import LimiterDep, SettingsDep, StorageDep, VerifierDep, WriteKey
from app.api.routes.galleries import GalleryId, SubjectId
from app.errors import ServiceError
from app.jobs import embed_images, quality_floor
from app.limiter import InferenceLimiter
from app.schemas.responses import FaceSummary, Timings, elapsed_ms
from app.schemas.subjects import (
    DeletedResponse,
    EnrolJSON,
    EnrolOptions,
    EnrolResponse,
    ProbeUploads,
    SubjectResponse,
    SubjectVerifyJSON,
    SubjectVerifyOptions,
    SubjectVerifyResponse,
    TemplateResponse,
)
from app.settings import Settings
from app.subjects import EnrolmentCheckResult, enrolment_check, judge_probe, new_templates, upload_hash, usable
from model.verify.results import FaceEmbedding
from model.verify.verifier import Verifier

router = APIRouter(prefix="/galleries/{gallery_id}/subjects/{subject_id}", tags=["subjects"])

NO_TIMINGS = {"decode": 0.0, "detect": 0.0, "align": 0.0, "embed": 0.0, "quality": 0.0}


@router.post(
    "/faces", status_code=201, response_model=EnrolResponse, dependencies=[WriteKey],
    openapi_extra=request_docs(EnrolJSON, EnrolOptions, {"images": "an image (repeat the field for more)"},
                               {"embeddings": "in place of images: a JSON list of embedding objects from /embed"}),
)
async def enrol(
    gallery_id: GalleryId, subject_id: SubjectId, request: Request, verifier: VerifierDep, limiter: LimiterDep,
    storage: StorageDep, settings: SettingsDep,
) -> EnrolResponse:
    """Enrols the chosen face of each image (and each embedding given back from /embed) in one
    transaction: all or none. Each new face must match the subject's other faces at the enrolment
    operating point (see /info), else 409 subject_mismatch, unless allow_mismatch is set; the same
    file twice in a gallery is 409 duplicate_face."""
    uploads = await read_enrol_request(request, settings.max_upload_bytes, settings.max_embed_images)
    await run_in_threadpool(storage.get_subject, gallery_id, subject_id)  # 404 before any inference
    given = [verifier.accept_embedding(item.embedding, item.model.to_model(), f"embeddings[{index}]")
             for index, item in enumerate(uploads.embeddings)]
    faces, timings = [], dict(NO_TIMINGS)
    floor = quality_floor(verifier, uploads.options.min_quality, settings.enrol_min_quality)
    if uploads.images:
        faces, timings = await limiter.run("enrol", partial(embed_images, verifier, uploads.images,
                                                            uploads.options.face_policy, settings.max_image_pixels,
                                                            min_quality=floor))
    salt = request.app.state.storage.salt
    templates = new_templates(verifier, faces + given, [upload_hash(salt, data) for data in uploads.images]
                              + [None] * len(given))
    checked = EnrolmentCheckResult()
    check = enrolment_check(verifier, templates, settings.enrol_operating_point, uploads.options.allow_mismatch,
                            checked)
    added = await run_in_threadpool(storage.add_templates, gallery_id, subject_id, templates, check,
                                    settings.max_templates_per_subject)
    subject = await run_in_threadpool(storage.get_subject, gallery_id, subject_id)
    return EnrolResponse(
        subject=SubjectResponse.of(subject, {t.id for t in usable(verifier, subject.templates)}),
        added=[TemplateResponse.of(template, True) for template in added],
        faces=[FaceSummary.of(face) for face in faces] + [None] * len(given),
        checked_against=checked.checked_against,
        timings_ms=Timings(**timings, total=elapsed_ms(request.state.started)),
        request_id=request.state.request_id,
    )


@router.delete("/faces/{template_id}", response_model=DeletedResponse, dependencies=[WriteKey])
async def delete_face(gallery_id: GalleryId, subject_id: SubjectId, template_id: str, storage: StorageDep,
                      request: Request) -> DeletedResponse:
    return DeletedResponse.of(await run_in_threadpool(storage.delete_template, gallery_id, subject_id, template_id),
                              request.state)


async def probe_embedding(
    uploads: ProbeUploads, verifier: Verifier, limiter: InferenceLimiter, settings: Settings
) -> tuple[FaceEmbedding, dict[str, float]]:
    """The probe's embedding: given back (checked against the model serving), or of its image's face."""
    if uploads.probe.embedding is not None:
        given = uploads.probe.embedding
        return verifier.accept_embedding(given.embedding, given.model.to_model(), "embedding"), dict(NO_TIMINGS)
    options = uploads.options
    floor = quality_floor(verifier, options.min_quality, settings.min_quality)
    faces, timings = await limiter.run("verify", partial(embed_images, verifier, [uploads.probe.image],
                                                         options.face_policy, settings.max_image_pixels, ["image"],
                                                         floor))
    return faces[0], timings


@router.post(
    "/verify", response_model=SubjectVerifyResponse,
    openapi_extra=probe_docs(SubjectVerifyJSON, SubjectVerifyOptions),
)
async def verify_subject(
    gallery_id: GalleryId, subject_id: SubjectId, request: Request, verifier: VerifierDep, limiter: LimiterDep,
    storage: StorageDep, settings: SettingsDep,
) -> SubjectVerifyResponse:
    """Is the probe this subject? It is scored against all the subject's usable templates together
    (the card's subject rule), and decided at an operating point calibrated for that many templates
    (or an explicit threshold on the score)."""
    uploads = await read_probe_request(request, settings.max_upload_bytes)
    subject = await run_in_threadpool(storage.get_subject, gallery_id, subject_id)
    compared = usable(verifier, subject.templates)
    if not subject.templates:
        raise ServiceError("subject_empty", f"subject {subject_id!r} has no enrolled faces yet")
    if not compared:
        raise ServiceError("reenrolment_needed", f"subject {subject_id!r} was enrolled with another model or "
                           "inference mode; enrol new photos of it")
    options = uploads.options
    decision = verifier.subject_decision(len(compared), options.threshold, options.operating_point)
    probe, timings = await probe_embedding(uploads, verifier, limiter, settings)
    verdict, distances = judge_probe(verifier, probe, compared, decision)
    calibration = verifier.card.subjects_for(verifier.flip_tta)
    calibrated_for = calibration.calibrated_k(len(compared)) if calibration and verdict.operating_point else None
    return SubjectVerifyResponse.of(
        verdict, verifier.subject_rule, subject, compared, distances,
        FaceSummary.of(probe) if probe.face is not None else None, calibrated_for, timings, verifier.card,
        request.state,
    )
