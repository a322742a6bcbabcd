"""POST /verify: are the faces in two images the same person?"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request

from app.api.bodies import read_verify_request, request_docs
from app.api.deps import LimiterDep, MetricsDep, SettingsDep, VerifierDep
from app.jobs import given_embeddings, verify_uploads
from app.schemas.requests import VerifyJSON, VerifyOptions
from app.schemas.responses import VerifyResponse

router = APIRouter(tags=["faces"])


@router.post(
    "/verify",
    response_model=VerifyResponse,
    openapi_extra=request_docs(
        VerifyJSON,
        VerifyOptions,
        {"image1": "first image", "image2": "second image"},
        {"embedding1": "in place of image1: an embedding object from /embed, as JSON text (or a file part)",
         "embedding2": "in place of image2: an embedding object from /embed, as JSON text (or a file part)"},
    ),
)
async def verify(
    request: Request, verifier: VerifierDep, limiter: LimiterDep, settings: SettingsDep, metrics: MetricsDep
) -> VerifyResponse:
    """Each side is an image (`image1`, `image2`) or an embedding from /embed in its place
    (`embedding1`, `embedding2`). The faces go through the encoder in one batch; the decision uses
    an explicit `threshold` or a calibrated operating point (the card's default unless
    `operating_point` names another). `face_policy=all` compares the chosen face of image1 with every
    face of image2 (of image1 where image2 is an embedding) and answers for the best match."""
    uploads = await read_verify_request(request, settings.max_upload_bytes)
    # Resolved once, before any image is decoded or queued: an unknown operating point or a foreign
    # embedding costs nothing.
    decision = verifier.decision(uploads.options.threshold, uploads.options.operating_point)
    given = given_embeddings(verifier, uploads)
    result, decode_ms = await limiter.run("verify", partial(verify_uploads, verifier, uploads, given, decision, settings))
    metrics.count_faces("verify", result.faces)
    return VerifyResponse.of(result, decode_ms, verifier.card, request.state)
