"""POST /verify: are the faces in two images the same person?"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request

from app.api.bodies import read_verify_request, request_body_docs
from app.api.deps import LimiterDep, MetricsDep, SettingsDep, VerifierDep
from app.jobs import verify_uploads
from app.schemas.requests import VerifyJSON
from app.schemas.responses import VerifyResponse

router = APIRouter(tags=["faces"])


@router.post(
    "/verify",
    response_model=VerifyResponse,
    openapi_extra=request_body_docs(VerifyJSON, {"image1": "first image", "image2": "second image"}),
)
async def verify(
    request: Request, verifier: VerifierDep, limiter: LimiterDep, settings: SettingsDep, metrics: MetricsDep
) -> VerifyResponse:
    """Both faces go through the encoder in one batch; the decision uses an explicit `threshold` or
    a calibrated operating point (the card's default unless `operating_point` names another)."""
    uploads = await read_verify_request(request, settings.max_upload_bytes)
    # Resolved once, before any image is decoded or queued: an unknown operating point costs nothing.
    decision = verifier.decision(uploads.options.threshold, uploads.options.operating_point)
    result, decode_ms = await limiter.run(
        "verify", partial(verify_uploads, verifier, uploads, decision, settings.max_image_pixels)
    )
    metrics.count_faces("verify", result.faces)
    return VerifyResponse.of(result, decode_ms, verifier.card, request.state)
