"""1:N search: who of a gallery the probe is, if anyone, at a threshold that holds the gallery's
false-positive identification rate for its size (model.verify.open_set)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from app.schemas.galleries import ProbeUploads
from app.security import Principal
from app.services.galleries import within_reach
from app.services.keys import audit_event
from app.services.verification import VerificationService
from app.storage.base import Candidate, Storage
from app.storage.search_index import SearchIndex
from model.card import MeasuredGallery
from model.verify.open_set import SearchDecision, SearchVerdict
from model.verify.results import FaceEmbedding
from model.verify.verifier import Verifier


@dataclass(frozen=True)
class Search:
    """The gallery's size, its nearest subjects (nearest first) each judged, and the probe."""

    gallery_id: str
    gallery_size: int
    candidates: list[tuple[Candidate, SearchVerdict]]
    decision: SearchDecision
    probe: FaceEmbedding
    timings: dict[str, float]

    @property
    def match(self) -> Candidate | None:
        """The nearest subject judged the same; None: nobody enrolled."""
        return next((candidate for candidate, judged in self.candidates if judged.verdict.same), None)

    @property
    def extrapolated(self) -> bool:
        return any(judged.extrapolated for _, judged in self.candidates)

    @property
    def measured(self) -> MeasuredGallery | None:
        """The calibration's LFW gallery nearest this one in size, where an operating point was used."""
        calibration = self.decision.calibration
        return calibration.measured_nearest(self.gallery_size) if calibration and self.gallery_size else None


@dataclass(frozen=True)
class SearchService:
    storage: Storage
    verification: VerificationService
    index: SearchIndex

    @property
    def verifier(self) -> Verifier:
        return self.verification.verifier

    async def search(self, principal: Principal, gallery_id: str, uploads: ProbeUploads) -> Search:
        """The `top_k` subjects nearest the probe, each judged at its own threshold (its number of
        templates and the gallery's size), or at the request's explicit one. The outcome (the subject
        matched, or none) is in the audit trail before it is answered."""
        options = uploads.options
        decision = self.verifier.search_decision(options.threshold, options.operating_point)
        # 404 before any inference
        await run_in_threadpool(self.storage.gallery_revision, within_reach(principal, gallery_id))
        embedded, timings = await self.verification.probe(uploads)
        size, nearest = await run_in_threadpool(self.index.search, self.storage, gallery_id,
                                                self.verifier.embedding_model, embedded.embedding, options.top_k)
        candidates = [(candidate, decision.judge(candidate.score, candidate.templates, size)) for candidate in nearest]
        found = Search(gallery_id, size, candidates, decision, embedded, timings)
        match = found.match
        await run_in_threadpool(self.storage.record, audit_event(
            principal, "gallery.search", gallery_id, match.subject if match else None, 200, match is not None))
        return found
