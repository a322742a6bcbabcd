"""A subject's faces: enrol images or embeddings, delete one; verify a probe against the subject."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import DeleteKey, EnrolKey, EnrolmentDep, GalleriesDep, ReadKey, SettingsDep
from app.api.paths import GalleryId, SubjectId
from app.api.uploads import probe_docs, read_enrol_request, read_probe_request, request_docs
from app.schemas.galleries import (
    DeletedResponse,
    EnrolJSON,
    EnrolOptions,
    EnrolResponse,
    SubjectVerifyJSON,
    SubjectVerifyOptions,
    SubjectVerifyResponse,
)

router = APIRouter(prefix="/galleries/{gallery_id}/subjects/{subject_id}", tags=["subjects"])


@router.post(
    "/faces", status_code=201, response_model=EnrolResponse,
    openapi_extra=request_docs(EnrolJSON, EnrolOptions, {"images": "an image (repeat the field for more)"},
                               {"embeddings": "in place of images: a JSON list of embedding objects from /embed"}),
)
async def enrol(principal: EnrolKey, gallery_id: GalleryId, subject_id: SubjectId, request: Request,
                enrolment: EnrolmentDep, settings: SettingsDep) -> EnrolResponse:
    """Enrols the chosen face of each image (and each embedding given back from /embed) in one
    transaction: all or none. Each new face must match the subject's other faces at the enrolment
    operating point (see /info), else 409 subject_mismatch, unless allow_mismatch is set; the same
    file twice in a gallery is 409 duplicate_face."""
    uploads = await read_enrol_request(request, settings.max_upload_bytes, settings.max_embed_images)
    return EnrolResponse.of(await enrolment.enrol(principal, gallery_id, subject_id, uploads), request.state)


@router.delete("/faces/{template_id}", response_model=DeletedResponse)
async def delete_face(principal: DeleteKey, gallery_id: GalleryId, subject_id: SubjectId, template_id: str,
                      galleries: GalleriesDep, request: Request) -> DeletedResponse:
    deleted = await galleries.delete_face(principal, gallery_id, subject_id, template_id)
    return DeletedResponse.of(deleted, request.state)


@router.post(
    "/verify", response_model=SubjectVerifyResponse,
    openapi_extra=probe_docs(SubjectVerifyJSON, SubjectVerifyOptions),
)
async def verify_subject(principal: ReadKey, gallery_id: GalleryId, subject_id: SubjectId, request: Request,
                         enrolment: EnrolmentDep, settings: SettingsDep) -> SubjectVerifyResponse:
    """Is the probe this subject? It is scored against all the subject's usable templates together
    (the card's subject rule), and decided at an operating point calibrated for that many templates
    (or an explicit threshold on the score)."""
    uploads = await read_probe_request(request, settings.max_upload_bytes)
    result = await enrolment.verify(principal, gallery_id, subject_id, uploads)
    return SubjectVerifyResponse.of(result, enrolment.verifier.card, request.state)
