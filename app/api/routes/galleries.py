"""Galleries and their subjects: create, list (cursor pages), read, delete for real, import."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.api.deps import DeleteKey, EnrolKey, EnrolmentDep, GalleriesDep, ReadKey
from app.api.paths import GalleryId, SubjectId
from app.errors import invalid_request
from app.schemas.galleries import (
    CreateGallery,
    CreateSubject,
    DeletedResponse,
    ExpiringResponse,
    GalleryList,
    GalleryPolicy,
    GalleryResponse,
    ImportJSON,
    ImportResponse,
    SubjectExport,
    SubjectList,
    SubjectResponse,
    SubjectSummary,
    after_cursor,
    cursor_of,
)

router = APIRouter(prefix="/galleries", tags=["subjects"])

Cursor = Annotated[str | None, Query(max_length=256, description="next_cursor of the previous page")]
Limit = Annotated[int, Query(ge=1, le=1000, description="items per page")]


def _after(cursor: str | None) -> str | None:
    try:
        return after_cursor(cursor)
    except ValueError as error:
        raise invalid_request(str(error)) from None


@router.post("", status_code=201, response_model=GalleryResponse)
async def create_gallery(principal: EnrolKey, body: CreateGallery, galleries: GalleriesDep) -> GalleryResponse:
    """A new gallery, within the galleries the key reaches (403 forbidden outside them), with its
    retention and consent policy."""
    return GalleryResponse.of(await galleries.create_gallery(principal, body.id, body.retention(),
                                                             body.require_consent, body.duplicate_check))


@router.patch("/{gallery_id}", response_model=GalleryResponse)
async def set_policy(principal: EnrolKey, gallery_id: GalleryId, body: GalleryPolicy,
                     galleries: GalleriesDep) -> GalleryResponse:
    """The gallery's retention and consent policy, replaced whole; subjects past the new retention are
    deleted by the next sweep (see /expiring first)."""
    return GalleryResponse.of(await galleries.set_policy(principal, gallery_id, body.retention(),
                                                         body.require_consent, body.duplicate_check))


@router.get("/{gallery_id}/expiring", response_model=ExpiringResponse)
async def expiring(principal: ReadKey, gallery_id: GalleryId, galleries: GalleriesDep,
                   at: Annotated[dt.datetime | None, Query(description="by when (ISO 8601); default: now")] = None
                   ) -> ExpiringResponse:
    """A dry run of the retention sweep: the subjects it would delete by `at`; nothing is deleted."""
    if at is not None and at.tzinfo is None:
        raise invalid_request("give at with a time zone (e.g. 2027-01-01T00:00:00Z)")
    when = at.timestamp() if at else time.time()
    return ExpiringResponse.of(gallery_id, when, await galleries.expiring(principal, gallery_id, when))


@router.get("", response_model=GalleryList)
async def list_galleries(principal: ReadKey, galleries: GalleriesDep, cursor: Cursor = None,
                         limit: Limit = 100) -> GalleryList:
    """The galleries the key reaches, in id order."""
    page = await galleries.list_galleries(principal, _after(cursor), limit)
    return GalleryList(galleries=[GalleryResponse.of(g) for g in page.items], next_cursor=cursor_of(page))


@router.get("/{gallery_id}", response_model=GalleryResponse)
async def get_gallery(principal: ReadKey, gallery_id: GalleryId, galleries: GalleriesDep) -> GalleryResponse:
    return GalleryResponse.of(await galleries.get_gallery(principal, gallery_id))


@router.delete("/{gallery_id}", response_model=DeletedResponse)
async def delete_gallery(principal: DeleteKey, gallery_id: GalleryId, galleries: GalleriesDep,
                         request: Request) -> DeletedResponse:
    """Deletes the gallery, its subjects and their templates in one transaction; nothing of them
    is readable afterwards."""
    return DeletedResponse.of(await galleries.delete_gallery(principal, gallery_id), request.state)


@router.post("/{gallery_id}/import", status_code=201, response_model=ImportResponse)
async def import_subjects(principal: EnrolKey, gallery_id: GalleryId, body: ImportJSON, enrolment: EnrolmentDep,
                          request: Request) -> ImportResponse:
    """New subjects with embeddings from /embed, all in one transaction (a taken id refuses the
    whole request: 409 conflict); each embedding is checked against the model serving."""
    stored = await enrolment.import_subjects(principal, gallery_id, body.subjects)
    return ImportResponse(subjects=len(body.subjects), templates=stored, request_id=request.state.request_id)


@router.post("/{gallery_id}/subjects", status_code=201, response_model=SubjectSummary)
async def create_subject(principal: EnrolKey, gallery_id: GalleryId, body: CreateSubject,
                         galleries: GalleriesDep) -> SubjectSummary:
    return SubjectSummary.of(await galleries.create_subject(principal, gallery_id, body.id))


@router.get("/{gallery_id}/subjects", response_model=SubjectList)
async def list_subjects(principal: ReadKey, gallery_id: GalleryId, galleries: GalleriesDep, cursor: Cursor = None,
                        limit: Limit = 100) -> SubjectList:
    page = await galleries.list_subjects(principal, gallery_id, _after(cursor), limit)
    return SubjectList(subjects=[SubjectSummary.of(s) for s in page.items], next_cursor=cursor_of(page))


@router.get("/{gallery_id}/subjects/{subject_id}", response_model=SubjectResponse)
async def get_subject(principal: ReadKey, gallery_id: GalleryId, subject_id: SubjectId,
                      enrolment: EnrolmentDep) -> SubjectResponse:
    """The subject and its templates (never the embeddings), each marked usable where the model
    serving made it; needs_reenrolment where none is."""
    stored = await enrolment.get_subject(principal, gallery_id, subject_id)
    return SubjectResponse.of(stored.subject, stored.usable)


@router.get("/{gallery_id}/subjects/{subject_id}/export", response_model=SubjectExport)
async def export_subject(principal: ReadKey, gallery_id: GalleryId, subject_id: SubjectId, enrolment: EnrolmentDep,
                         request: Request,
                         embeddings: Annotated[bool, Query(description="include the embeddings (admin only)")] = False
                         ) -> SubjectExport:
    """Everything stored about the subject as JSON: its record, consent and expiry, its templates'
    metadata, and the audit entries that name it; the embeddings only where asked for, by an admin."""
    return SubjectExport.of(await enrolment.export(principal, gallery_id, subject_id, embeddings), request.state)


@router.delete("/{gallery_id}/subjects/{subject_id}", response_model=DeletedResponse)
async def delete_subject(principal: DeleteKey, gallery_id: GalleryId, subject_id: SubjectId, galleries: GalleriesDep,
                         request: Request) -> DeletedResponse:
    return DeletedResponse.of(await galleries.delete_subject(principal, gallery_id, subject_id), request.state)
