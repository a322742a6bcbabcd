"""POST /group: a batch of photos (every face of each) and/or embeddings, grouped by person."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import GroupingDep, SettingsDep, VerifyKey
from app.api.uploads import read_group_request, request_docs
from app.schemas.grouping import GroupJSON, GroupOptions, GroupResponse

router = APIRouter(tags=["faces"])


@router.post(
    "/group", response_model=GroupResponse, dependencies=[VerifyKey],
    openapi_extra=request_docs(GroupJSON, GroupOptions, {"images": "an image (repeat the field for more)"},
                               {"embeddings": "a JSON list of embedding objects from /embed"}),
)
async def group(request: Request, service: GroupingDep, settings: SettingsDep) -> GroupResponse:
    """Every face of the images, and the embeddings, split into groups of one person each, plus the
    faces that fit no group, under the calibrated rule and threshold (see /info). Nothing is stored."""
    uploads = await read_group_request(request, settings.max_upload_bytes, settings.max_group_images)
    result = await service.group(uploads)
    return GroupResponse.of(result, service.verifier.card, request.state)
