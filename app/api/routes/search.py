"""POST /galleries/{g}/search: who of the gallery is this, if anyone."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from app.api.bodies import probe_docs, read_probe_request
from app.api.deps import LimiterDep, SettingsDep, StorageDep, VerifierDep
from app.api.routes.enrolment import probe_embedding
from app.api.routes.galleries import GalleryId
from app.errors import invalid_request
from app.schemas.responses import FaceSummary, ModelRef, Timings, elapsed_ms
from app.schemas.subjects import (
    MeasuredSearch,
    SearchCandidate,
    SearchJSON,
    SearchMatch,
    SearchOperatingPoint,
    SearchOptions,
    SearchResponse,
)
from app.subjects import template_model
from model.verify.search import search_threshold

router = APIRouter(prefix="/galleries/{gallery_id}", tags=["subjects"])


@router.post(
    "/search", response_model=SearchResponse,
    openapi_extra=probe_docs(SearchJSON, SearchOptions),
)
async def search(
    gallery_id: GalleryId, request: Request, verifier: VerifierDep, limiter: LimiterDep, storage: StorageDep,
    settings: SettingsDep,
) -> SearchResponse:
    """The `top_k` subjects nearest the probe, and the match: the nearest at or below its threshold,
    or null. Thresholds hold the gallery's false-positive identification rate at the operating
    point's target for its size and each subject's number of templates (see /info)."""
    uploads = await read_probe_request(request, settings.max_upload_bytes, SearchJSON, SearchOptions)
    options: SearchOptions = uploads.options
    subjects, searched = verifier.card.subjects_for(verifier.flip_tta), verifier.card.search_for(verifier.flip_tta)
    point = None
    if options.threshold is None:
        if subjects is None or searched is None or subjects.rule != "centroid":
            raise invalid_request("the encoder has no calibrated search; give an explicit threshold")
        name = options.operating_point or searched.default
        if name not in searched.targets:
            raise invalid_request(f"unknown operating point {name!r}; known: {', '.join(searched.targets)}")
        point = (name, searched.targets[name])
    await run_in_threadpool(storage.gallery_revision, gallery_id)  # 404 before any inference
    probe, timings = await probe_embedding(uploads, verifier, limiter, settings)
    size, nearest = await run_in_threadpool(request.app.state.search_index.search, storage, gallery_id,
                                            template_model(verifier), probe.embedding, options.top_k)
    extrapolated = False
    candidates = []
    for candidate in nearest:
        if point is None:
            threshold = options.threshold
        else:
            threshold, beyond = search_threshold(subjects, candidate.templates, point[1], size)
            extrapolated |= beyond
        candidates.append(SearchCandidate(subject=candidate.subject, score=round(candidate.score, 6),
                                          threshold=round(threshold, 6), same=candidate.score <= threshold,
                                          templates=candidate.templates))
    match = next((SearchMatch(subject=c.subject, score=c.score) for c in candidates if c.same), None)
    measured = searched.measured_nearest(size) if point and size else None
    return SearchResponse(
        match=match, candidates=candidates, gallery=gallery_id, gallery_size=size,
        operating_point=None if point is None else SearchOperatingPoint(
            name=point[0], fpir=point[1], extrapolated=extrapolated,
            measured=None if measured is None else MeasuredSearch(
                gallery_size=measured["gallery_size"], fpir=measured["targets"][point[0]]["fpir"],
                fnir=measured["targets"][point[0]]["fnir"], rank1=measured["rank1"])),
        face=FaceSummary.of(probe) if probe.face is not None else None, model=ModelRef.of(verifier.card),
        timings_ms=Timings(**timings, total=elapsed_ms(request.state.started)), request_id=request.state.request_id,
    )
