"""Request and response shapes of a gallery's duplicate report: a job, its progress, its pairs in pages."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.galleries import optional_timestamp, timestamp
from app.storage.base import Job, SubjectPair


class ReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operating_point: str | None = Field(
        None, min_length=1, max_length=64, description="the search's FPIR target by name (see /info); default fpir_1e-3")
    threshold: float | None = Field(None, gt=0, le=2, description="in place of the operating point: one threshold "
                                    "on every pair's centroid distance")


class JobProgress(BaseModel):
    done: int = Field(description="work done so far (pairs compared; vectors searched in galleries above 2x10^5)")
    total: int


class DuplicatePair(BaseModel):
    first: str
    second: str
    score: float = Field(description="the distance between the two subjects' centroids (lower = more alike)")
    threshold: float = Field(description="the stricter of the two subjects' search thresholds")

    @classmethod
    def of(cls, pair: SubjectPair) -> DuplicatePair:
        return cls(first=pair.first, second=pair.second, score=pair.score, threshold=pair.threshold)


class ReportResponse(BaseModel):
    """A duplicate report: `running` (see progress), then `done` with its pairs, closest first, in pages;
    or `cancelled`, `failed`, or `interrupted` (its replica stopped: start another)."""

    id: str
    gallery: str
    state: str
    progress: JobProgress
    operating_point: str | None
    threshold: float | None
    created_at: str
    finished_at: str | None
    cancel_requested: bool
    gallery_size: int | None = Field(description="subjects compared, once done")
    pairs_found: int | None = Field(description="pairs at or below their threshold, once done")
    truncated: bool = Field(False, description="more pairs were found than a report keeps (the closest are kept)")
    pairs: list[DuplicatePair] = Field(description="this page of the pairs, once done")
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")

    @classmethod
    def of(cls, job: Job, at: float, pairs: list[SubjectPair] = (), next_cursor: str | None = None) -> ReportResponse:
        summary = job.summary or {}
        return cls(
            id=job.id, gallery=job.gallery_id, state=job.state_at(at), progress=JobProgress(done=job.done,
                                                                                               total=job.total),
            operating_point=job.parameters.get("operating_point"), threshold=job.parameters.get("threshold"),
            created_at=timestamp(job.created_at), finished_at=optional_timestamp(job.finished_at),
            cancel_requested=job.cancel_requested, gallery_size=summary.get("gallery_size"),
            pairs_found=summary.get("pairs"), truncated=summary.get("truncated", False),
            pairs=[DuplicatePair.of(pair) for pair in pairs], next_cursor=next_cursor,
        )
