"""Duplicate identities in a gallery: the enrolment's check of a new subject's first faces, and the
gallery's report of the subject pairs that look like one person (model.verify.duplicates), run as
a job: its progress and results are in the database, so any replica answers for it.

Both judge at the gallery's search operating point (the FPIR target for its size), and both see
only the gallery a key reaches; every subject of a reachable gallery is the key's to see.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from starlette.concurrency import run_in_threadpool

from app.errors import RETRY_AFTER_S, ServiceError
from app.logging import get_logger
from app.security import Principal
from app.services.galleries import within_reach
from app.services.keys import audit_event
from app.storage.base import Job, NewTemplate, PossibleDuplicate, Storage, StorageError, SubjectPair
from app.storage.search_index import SearchIndex
from model.errors import Uncalibrated
from model.verify.duplicates import duplicate_pairs, subject_thresholds
from model.verify.open_set import SearchDecision
from model.verify.verifier import Verifier

logger = get_logger("app.duplicates")

CANDIDATES = 5  # the nearest subjects each new face is judged against
MAX_RUNNING_REPORTS = 2  # report jobs one replica runs at once; more wait for the client to retry
MAX_REPORTED_PAIRS = 100_000  # a report keeps its closest pairs up to this many (summary.truncated)


class Cancelled(Exception):
    """A report job asked to stop."""


class ReportRunner:
    """The report jobs of this replica, each on a thread of its own, at most MAX_RUNNING_REPORTS."""

    def __init__(self, limit: int = MAX_RUNNING_REPORTS):
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def reserve(self) -> None:
        if not self._slots.acquire(blocking=False):
            raise ServiceError("overloaded", f"{self.limit} reports are running on this replica; retry shortly",
                               headers={"Retry-After": str(RETRY_AFTER_S)})

    def release(self) -> None:
        self._slots.release()

    def run(self, work: Callable[[], None], name: str) -> None:
        """Run `work` on its own thread, then give its slot back (reserve() first)."""

        def body() -> None:
            try:
                work()
            finally:
                self.release()

        try:
            threading.Thread(target=body, name=name, daemon=True).start()
        except BaseException:
            self.release()
            raise


@dataclass(frozen=True)
class DuplicateService:
    storage: Storage
    verifier: Verifier
    index: SearchIndex
    runner: ReportRunner

    def decision(self, threshold: float | None = None, operating_point: str | None = None) -> SearchDecision:
        try:
            return self.verifier.search_decision(threshold, operating_point)
        except Uncalibrated:
            raise ServiceError("invalid_request", "duplicate checks judge at the search operating point, and this "
                               "card has no search calibration") from None

    # -- at enrolment ---------------------------------------------------------------------------

    def possible_duplicates(self, gallery_id: str, templates: list[NewTemplate]) -> list[PossibleDuplicate]:
        """The subjects any of the new faces matches as a search would (each subject's best score),
        closest first. Blocking: run it off the event loop."""
        decision = self.decision()
        found: dict[str, PossibleDuplicate] = {}
        for template in templates:
            size, nearest = self.index.search(self.storage, gallery_id, self.verifier.embedding_model,
                                              template.embedding, CANDIDATES)
            for candidate in nearest:
                verdict = decision.judge(candidate.score, candidate.templates, size).verdict
                held = found.get(candidate.subject)
                if verdict.same and (held is None or candidate.score < held.score):
                    found[candidate.subject] = PossibleDuplicate(candidate.subject, round(candidate.score, 6),
                                                                 round(verdict.threshold, 6))
        return sorted(found.values(), key=lambda match: match.score)

    # -- the gallery's report -------------------------------------------------------------------

    async def start_report(self, principal: Principal, gallery_id: str, threshold: float | None,
                           operating_point: str | None) -> Job:
        decision = self.decision(threshold, operating_point)
        at = time.time()
        job = Job(uuid.uuid4().hex, within_reach(principal, gallery_id), "duplicates", principal.key_id,
                  {"operating_point": decision.point, "threshold": threshold}, "running", at, at)
        self.runner.reserve()
        try:
            await run_in_threadpool(self.storage.create_job, job,
                                    audit_event(principal, "gallery.duplicates", gallery_id, None, 202))
        except BaseException:
            self.runner.release()
            raise
        try:
            self.runner.run(lambda: self._report(job, decision), f"duplicates-{job.id[:8]}")
        except RuntimeError:  # no thread to be had
            await run_in_threadpool(self._finish, job, "failed", {"error": "internal_error"})
            raise
        return job

    def _report(self, job: Job, decision: SearchDecision) -> None:
        """The report, on the job's thread: every pair of the gallery's subjects compared, the
        progress written after each block of rows (where a cancellation is seen), the pairs stored."""

        def progress(done: int, total: int) -> None:
            if self.storage.job_progress(job.id, done, total):
                raise Cancelled

        try:
            held = self.index.matrix(self.storage, job.gallery_id, self.verifier.embedding_model)
            progress(0, 0)  # alive, and not asked to stop, once the matrix is read
            size = len(held.subjects)
            thresholds = subject_thresholds(decision, held.counts, size) if size else np.zeros(0)
            firsts, seconds, scores, limits = duplicate_pairs(held.centroids, thresholds, progress)
            pairs = [(str(held.subjects[i]), str(held.subjects[j]), round(float(score), 6), round(float(limit), 6))
                     for i, j, score, limit in zip(firsts[:MAX_REPORTED_PAIRS], seconds[:MAX_REPORTED_PAIRS],
                                                   scores, limits)]
            summary = {"gallery_size": size, "pairs": len(firsts), "truncated": len(firsts) > MAX_REPORTED_PAIRS,
                       "revision": held.revision}
            self.storage.finish_job(job.id, "done", summary, pairs)
        except Cancelled:
            self._finish(job, "cancelled", {})
        except Exception as error:  # the job fails, the replica goes on
            code = error.code if isinstance(error, StorageError) else "internal_error"
            logger.exception("duplicate report %s failed", job.id)
            self._finish(job, "failed", {"error": code})

    def _finish(self, job: Job, state: str, summary: dict) -> None:
        try:
            self.storage.finish_job(job.id, state, summary)
        except StorageError as error:  # its progress stops moving: it reads as interrupted
            logger.warning("duplicate report %s could not be marked %s: %s", job.id, state, error.message)

    async def report(self, principal: Principal, gallery_id: str, job_id: str, after: int,
                     limit: int) -> tuple[Job, list[SubjectPair]]:
        job = await run_in_threadpool(self.storage.get_job, within_reach(principal, gallery_id), job_id)
        pairs = await run_in_threadpool(self.storage.job_pairs, job_id, after, limit) if job.state == "done" else []
        return job, pairs

    async def cancel_report(self, principal: Principal, gallery_id: str, job_id: str) -> Job:
        """A running report asked to stop; a finished one deleted with its pairs."""
        event = audit_event(principal, "gallery.duplicates_cancel", within_reach(principal, gallery_id), None, 200)
        job = await run_in_threadpool(self.storage.cancel_job, gallery_id, job_id, event)
        return replace(job, cancel_requested=True) if job.state == "running" else job
