"""POST /galleries/{g}/search: who of the gallery is this, if anyone."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import ReadKey, SearchDep, SettingsDep
from app.api.paths import GalleryId
from app.api.uploads import probe_docs, read_probe_request
from app.schemas.galleries import SearchJSON, SearchOptions, SearchResponse

router = APIRouter(prefix="/galleries/{gallery_id}", tags=["subjects"])


@router.post(
    "/search", response_model=SearchResponse,
    openapi_extra=probe_docs(SearchJSON, SearchOptions),
)
async def search(principal: ReadKey, gallery_id: GalleryId, request: Request, service: SearchDep,
                 settings: SettingsDep) -> SearchResponse:
    """The `top_k` subjects nearest the probe, and the match: the nearest at or below its threshold,
    or null. Thresholds hold the gallery's false-positive identification rate at the operating
    point's target for its size and each subject's number of templates (see /info)."""
    uploads = await read_probe_request(request, settings.max_upload_bytes, SearchJSON, SearchOptions)
    result = await service.search(principal, gallery_id, uploads)
    return SearchResponse.of(result, service.verifier.card, request.state)
