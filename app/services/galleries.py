"""Galleries and their subjects as records: create, list in pages, read, delete for real. Nothing here
needs the model, so these answer while it still loads."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from app.storage.base import Deleted, Gallery, Page, Storage, Subject
from app.storage.search_index import SearchIndex


@dataclass(frozen=True)
class GalleryService:
    storage: Storage
    index: SearchIndex

    async def create_gallery(self, gallery_id: str) -> Gallery:
        return await run_in_threadpool(self.storage.create_gallery, gallery_id)

    async def list_galleries(self, after: str | None, limit: int) -> Page:
        return await run_in_threadpool(self.storage.list_galleries, after, limit)

    async def get_gallery(self, gallery_id: str) -> Gallery:
        return await run_in_threadpool(self.storage.get_gallery, gallery_id)

    async def delete_gallery(self, gallery_id: str) -> Deleted:
        """The gallery, its subjects and their templates, in one transaction; its search matrices too."""
        deleted = await run_in_threadpool(self.storage.delete_gallery, gallery_id)
        self.index.forget(gallery_id)
        return deleted

    async def create_subject(self, gallery_id: str, subject_id: str) -> Subject:
        return await run_in_threadpool(self.storage.create_subject, gallery_id, subject_id)

    async def list_subjects(self, gallery_id: str, after: str | None, limit: int) -> Page:
        return await run_in_threadpool(self.storage.list_subjects, gallery_id, after, limit)

    async def delete_subject(self, gallery_id: str, subject_id: str) -> Deleted:
        return await run_in_threadpool(self.storage.delete_subject, gallery_id, subject_id)

    async def delete_face(self, gallery_id: str, subject_id: str, template_id: str) -> Deleted:
        return await run_in_threadpool(self.storage.delete_template, gallery_id, subject_id, template_id)
