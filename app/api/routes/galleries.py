"""Galleries and their subjects: create, list (cursor pages), read, delete for real."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from app.api.deps import StorageDep, VerifierDep, WriteKey
from app.errors import invalid_request
from app.schemas.subjects import (
    ID_REGEX,
    CreateGallery,
    CreateSubject,
    DeletedResponse,
    GalleryList,
    GalleryResponse,
    ImportJSON,
    ImportResponse,
    SubjectList,
    SubjectResponse,
    SubjectSummary,
    after_cursor,
    cursor_of,
)
from app.storage.base import NewTemplate
from app.subjects import template_model, usable

router = APIRouter(prefix="/galleries", tags=["subjects"])

GalleryId = Annotated[str, Path(pattern=ID_REGEX, description="a gallery's id")]
SubjectId = Annotated[str, Path(pattern=ID_REGEX, description="a subject's id")]
Cursor = Annotated[str | None, Query(max_length=256, description="next_cursor of the previous page")]
Limit = Annotated[int, Query(ge=1, le=1000, description="items per page")]


def _after(cursor: str | None) -> str | None:
    try:
        return after_cursor(cursor)
    except ValueError as error:
        raise invalid_request(str(error)) from None


@router.post("", status_code=201, response_model=GalleryResponse, dependencies=[WriteKey])
async def create_gallery(body: CreateGallery, storage: StorageDep) -> GalleryResponse:
    return GalleryResponse.of(await run_in_threadpool(storage.create_gallery, body.id))


@router.get("", response_model=GalleryList)
async def list_galleries(storage: StorageDep, cursor: Cursor = None, limit: Limit = 100) -> GalleryList:
    page = await run_in_threadpool(storage.list_galleries, _after(cursor), limit)
    return GalleryList(galleries=[GalleryResponse.of(g) for g in page.items], next_cursor=cursor_of(page))


@router.get("/{gallery_id}", response_model=GalleryResponse)
async def get_gallery(gallery_id: GalleryId, storage: StorageDep) -> GalleryResponse:
    return GalleryResponse.of(await run_in_threadpool(storage.get_gallery, gallery_id))


@router.delete("/{gallery_id}", response_model=DeletedResponse, dependencies=[WriteKey])
async def delete_gallery(gallery_id: GalleryId, storage: StorageDep, request: Request) -> DeletedResponse:
    """Deletes the gallery, its subjects and their templates in one transaction; nothing of them
    is readable afterwards."""
    deleted = await run_in_threadpool(storage.delete_gallery, gallery_id)
    request.app.state.search_index.forget(gallery_id)
    return DeletedResponse.of(deleted, request.state)


@router.post("/{gallery_id}/import", status_code=201, response_model=ImportResponse, dependencies=[WriteKey])
async def import_subjects(gallery_id: GalleryId, body: ImportJSON, storage: StorageDep, verifier: VerifierDep,
                          request: Request) -> ImportResponse:
    """New subjects with embeddings from /embed, all in one transaction (a taken id refuses the
    whole request: 409 conflict); each embedding is checked against the model serving."""
    model = template_model(verifier)
    subjects = [
        (subject.id, [NewTemplate(verifier.accept_embedding(item.embedding, item.model.to_model(),
                                                            f"subjects[{i}].embeddings[{j}]").embedding, model)
                      for j, item in enumerate(subject.embeddings)])
        for i, subject in enumerate(body.subjects)
    ]
    if len({subject_id for subject_id, _ in subjects}) != len(subjects):
        raise invalid_request("a subject id is given twice in the import")
    stored = await run_in_threadpool(storage.import_subjects, gallery_id, subjects)
    return ImportResponse(subjects=len(subjects), templates=stored, request_id=request.state.request_id)


@router.post("/{gallery_id}/subjects", status_code=201, response_model=SubjectSummary, dependencies=[WriteKey])
async def create_subject(gallery_id: GalleryId, body: CreateSubject, storage: StorageDep) -> SubjectSummary:
    return SubjectSummary.of(await run_in_threadpool(storage.create_subject, gallery_id, body.id))


@router.get("/{gallery_id}/subjects", response_model=SubjectList)
async def list_subjects(gallery_id: GalleryId, storage: StorageDep, cursor: Cursor = None,
                        limit: Limit = 100) -> SubjectList:
    page = await run_in_threadpool(storage.list_subjects, gallery_id, _after(cursor), limit)
    return SubjectList(subjects=[SubjectSummary.of(s) for s in page.items], next_cursor=cursor_of(page))


@router.get("/{gallery_id}/subjects/{subject_id}", response_model=SubjectResponse)
async def get_subject(gallery_id: GalleryId, subject_id: SubjectId, storage: StorageDep,
                      verifier: VerifierDep) -> SubjectResponse:
    """The subject and its templates (never the embeddings), each marked usable where the model
    serving made it; needs_reenrolment where none is."""
    subject = await run_in_threadpool(storage.get_subject, gallery_id, subject_id)
    return SubjectResponse.of(subject, {t.id for t in usable(verifier, subject.templates)})


@router.delete("/{gallery_id}/subjects/{subject_id}", response_model=DeletedResponse, dependencies=[WriteKey])
async def delete_subject(gallery_id: GalleryId, subject_id: SubjectId, storage: StorageDep,
                         request: Request) -> DeletedResponse:
    return DeletedResponse.of(await run_in_threadpool(storage.delete_subject, gallery_id, subject_id), request.state)
