"""POST /embed: the L2-normalised embedding of the chosen face in each image."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request

from app.api.bodies import read_embed_request, request_docs
from app.api.deps import LimiterDep, MetricsDep, SettingsDep, VerifierDep
from app.jobs import embed_images, quality_floor
from app.schemas.requests import EmbedJSON, EmbedOptions
from app.schemas.responses import EmbedResponse

router = APIRouter(tags=["faces"])


@router.post(
    "/embed",
    response_model=EmbedResponse,
    openapi_extra=request_docs(EmbedJSON, EmbedOptions, {"images": "an image (repeat the field for more)"}),
)
async def embed(
    request: Request, verifier: VerifierDep, limiter: LimiterDep, settings: SettingsDep, metrics: MetricsDep
) -> EmbedResponse:
    """The images are embedded in passes of two. Euclidean distance between two returned vectors is
    the distance /verify reports; each item, sent back unchanged as embedding1 or embedding2, lets
    /verify decide on it."""
    uploads = await read_embed_request(request, settings.max_upload_bytes, settings.max_embed_images)
    floor = quality_floor(verifier, uploads.options.min_quality, settings.min_quality)
    faces, timings = await limiter.run("embed", partial(embed_images, verifier, uploads.images,
                                                        uploads.options.face_policy, settings.max_image_pixels,
                                                        min_quality=floor))
    metrics.count_faces("embed", faces)
    return EmbedResponse.of(faces, timings, verifier.card, verifier.embedding_model, request.state)
