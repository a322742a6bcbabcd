"""Galleries and their subjects as records: create, list in pages, read, delete for real. Nothing here
needs the model, so these answer while it still loads.

A gallery outside a key's reach answers exactly as one that does not exist (`within_reach`), and
listings hold only what the key reaches: no answer tells one tenant another's gallery ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from app.errors import ServiceError
from app.security import Principal
from app.services.keys import audit_event
from app.storage.base import (
    Deleted,
    DuplicateCheck,
    Expired,
    Gallery,
    Page,
    Retention,
    Storage,
    Subject,
    gallery_not_found,
)
from app.storage.search_index import SearchIndex


def within_reach(principal: Principal, gallery_id: str) -> str:
    """The gallery id, where the key reaches it; else the very answer of a gallery that does not exist."""
    if not principal.reaches(gallery_id):
        raise gallery_not_found(gallery_id)
    return gallery_id


@dataclass(frozen=True)
class GalleryService:
    storage: Storage
    index: SearchIndex

    async def create_gallery(self, principal: Principal, gallery_id: str, retention: Retention = Retention(),
                             require_consent: bool = False, duplicate_check: DuplicateCheck = "off") -> Gallery:
        if not principal.reaches(gallery_id):  # the same answer whether or not it exists
            raise ServiceError("forbidden", f"this key may not create gallery {gallery_id!r}: it is outside the "
                               "galleries the key reaches")
        event = audit_event(principal, "gallery.create", gallery_id, None, 201)
        return await run_in_threadpool(self.storage.create_gallery, gallery_id, event, retention, require_consent,
                                       duplicate_check)

    async def set_policy(self, principal: Principal, gallery_id: str, retention: Retention,
                         require_consent: bool, duplicate_check: DuplicateCheck = "off") -> Gallery:
        event = audit_event(principal, "gallery.update", within_reach(principal, gallery_id), None, 200)
        return await run_in_threadpool(self.storage.set_gallery_policy, gallery_id, retention, require_consent, event,
                                       duplicate_check)

    async def expiring(self, principal: Principal, gallery_id: str, at: float) -> list[Expired]:
        """What the gallery's retention would delete by `at`: a dry run of the sweep."""
        await run_in_threadpool(self.storage.get_gallery, within_reach(principal, gallery_id))
        return await run_in_threadpool(self.storage.sweep_expired, at, True, gallery_id, 10_000)

    async def list_galleries(self, principal: Principal, after: str | None, limit: int) -> Page:
        return await run_in_threadpool(self.storage.list_galleries, after, limit, principal.reach)

    async def get_gallery(self, principal: Principal, gallery_id: str) -> Gallery:
        return await run_in_threadpool(self.storage.get_gallery, within_reach(principal, gallery_id))

    async def delete_gallery(self, principal: Principal, gallery_id: str) -> Deleted:
        """The gallery, its subjects and their templates, in one transaction; its search matrices too."""
        event = audit_event(principal, "gallery.delete", within_reach(principal, gallery_id), None, 200)
        deleted = await run_in_threadpool(self.storage.delete_gallery, gallery_id, event)
        self.index.forget(gallery_id)
        return deleted

    async def create_subject(self, principal: Principal, gallery_id: str, subject_id: str) -> Subject:
        event = audit_event(principal, "subject.create", within_reach(principal, gallery_id), subject_id, 201)
        return await run_in_threadpool(self.storage.create_subject, gallery_id, subject_id, event)

    async def list_subjects(self, principal: Principal, gallery_id: str, after: str | None, limit: int) -> Page:
        return await run_in_threadpool(self.storage.list_subjects, within_reach(principal, gallery_id), after, limit)

    async def delete_subject(self, principal: Principal, gallery_id: str, subject_id: str) -> Deleted:
        event = audit_event(principal, "subject.delete", within_reach(principal, gallery_id), subject_id, 200)
        return await run_in_threadpool(self.storage.delete_subject, gallery_id, subject_id, event)

    async def delete_face(self, principal: Principal, gallery_id: str, subject_id: str, template_id: str) -> Deleted:
        event = audit_event(principal, "template.delete", within_reach(principal, gallery_id), subject_id, 200)
        return await run_in_threadpool(self.storage.delete_template, gallery_id, subject_id, template_id, event)
