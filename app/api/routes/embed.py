"""POST /embed: the L2-normalised embedding of the chosen face in each image."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import SettingsDep, VerificationDep, VerifyKey
from app.api.uploads import read_embed_request, request_docs
from app.schemas.requests import EmbedJSON, EmbedOptions
from app.schemas.responses import EmbedResponse

router = APIRouter(tags=["faces"])


@router.post(
    "/embed",
    response_model=EmbedResponse,
    dependencies=[VerifyKey],
    openapi_extra=request_docs(EmbedJSON, EmbedOptions, {"images": "an image (repeat the field for more)"}),
)
async def embed(request: Request, service: VerificationDep, settings: SettingsDep) -> EmbedResponse:
    """The images are embedded in passes of two. Euclidean distance between two returned vectors is
    the distance /verify reports; each item, sent back unchanged as embedding1 or embedding2, lets
    /verify decide on it."""
    uploads = await read_embed_request(request, settings.max_upload_bytes, settings.max_embed_images)
    faces, timings = await service.embed(uploads)
    verifier = service.verifier
    return EmbedResponse.of(faces, timings, verifier.card, verifier.embedding_model, request.state)
