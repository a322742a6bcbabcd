"""Duplicate identities in a gallery: the report of subject pairs that look like one person (a job),
and a subject's duplicate flag cleared after review."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import DuplicatesDep, EnrolKey, EnrolmentDep, ReadKey
from app.api.paths import GalleryId, SubjectId
from app.errors import invalid_request
from app.schemas.duplicates import ReportRequest, ReportResponse
from app.schemas.galleries import SubjectSummary, after_cursor, cursor_of
from app.storage.base import Page

router = APIRouter(prefix="/galleries/{gallery_id}", tags=["subjects"])


def _after(cursor: str | None) -> int:
    """The last seq a cursor stands for (0: the first page); cursors are the listings' (cursor_of)."""
    try:
        after = after_cursor(cursor)
    except ValueError as error:
        raise invalid_request(str(error)) from None
    if after is not None and not (after.isdigit() and int(after) < 2**31):
        raise invalid_request("cursor is not one this service returned")
    return int(after or 0)


@router.post("/duplicates", status_code=202, response_model=ReportResponse)
async def start_report(principal: EnrolKey, gallery_id: GalleryId, body: ReportRequest,
                       service: DuplicatesDep) -> ReportResponse:
    """Starts a report of the subject pairs whose centroids are as close as a search match at the
    operating point (each pair at the stricter of its two subjects' thresholds); poll its id. The
    enrol scope: a report is heavy work on the gallery's behalf."""
    job = await service.start_report(principal, gallery_id, body.threshold, body.operating_point)
    return ReportResponse.of(job, time.time())


@router.get("/duplicates/{job_id}", response_model=ReportResponse)
async def report(principal: ReadKey, gallery_id: GalleryId, job_id: str, service: DuplicatesDep,
                 cursor: Annotated[str | None, Query(max_length=64)] = None,
                 limit: Annotated[int, Query(ge=1, le=1000, description="pairs per page")] = 100) -> ReportResponse:
    """The report's state and progress; once done, a page of its pairs, closest first."""
    job, pairs = await service.report(principal, gallery_id, job_id, _after(cursor), limit + 1)
    page = Page(pairs[:limit], str(pairs[limit - 1].seq) if len(pairs) > limit else None)
    return ReportResponse.of(job, time.time(), page.items, cursor_of(page))


@router.delete("/duplicates/{job_id}", response_model=ReportResponse)
async def cancel_report(principal: EnrolKey, gallery_id: GalleryId, job_id: str,
                        service: DuplicatesDep) -> ReportResponse:
    """A running report is asked to stop (it ends `cancelled`); a finished or interrupted one is
    deleted with its pairs."""
    return ReportResponse.of(await service.cancel_report(principal, gallery_id, job_id), time.time())


@router.delete("/subjects/{subject_id}/duplicates", response_model=SubjectSummary)
async def clear_duplicates(principal: EnrolKey, gallery_id: GalleryId, subject_id: SubjectId,
                           enrolment: EnrolmentDep) -> SubjectSummary:
    """Clears the subject's possible_duplicates flag: a reviewer found it to be another person."""
    return SubjectSummary.of(await enrolment.clear_duplicates(principal, gallery_id, subject_id))
