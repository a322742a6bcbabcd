"""POST /verify: are the faces in two images the same person?"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request

from app.routes import LimiterDep, MetricsDep, SettingsDep, VerifierDep
from app.runtime import check_threshold_choice, verify_uploads
from app.schemas import VerifyJSON, VerifyResponse, read_verify_request, request_body_docs

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
    check_threshold_choice(verifier, uploads.options)
    result, decode_ms = await limiter.run(
        "verify", partial(verify_uploads, verifier, uploads, settings.max_image_pixels)
    )
    metrics.count_faces("verify", result.faces)
    return VerifyResponse.of(result, decode_ms, verifier.card, request.state)
