"""POST /verify: are the faces in two images the same person?"""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import SettingsDep, VerificationDep, VerifyKey
from app.api.uploads import read_verify_request, request_docs
from app.schemas.requests import VerifyJSON, VerifyOptions
from app.schemas.responses import VerifyResponse

router = APIRouter(tags=["faces"])


@router.post(
    "/verify",
    response_model=VerifyResponse,
    dependencies=[VerifyKey],
    openapi_extra=request_docs(
        VerifyJSON,
        VerifyOptions,
        {"image1": "first image", "image2": "second image"},
        {"embedding1": "in place of image1: an embedding object from /embed, as JSON text (or a file part)",
         "embedding2": "in place of image2: an embedding object from /embed, as JSON text (or a file part)"},
    ),
)
async def verify(request: Request, service: VerificationDep, settings: SettingsDep) -> VerifyResponse:
    """Each side is an image (`image1`, `image2`) or an embedding from /embed in its place
    (`embedding1`, `embedding2`). The faces go through the encoder in one batch; the decision uses
    an explicit `threshold` or a calibrated operating point (the card's default unless
    `operating_point` names another). `face_policy=all` compares the chosen face of image1 with every
    face of image2 (of image1 where image2 is an embedding) and answers for the best match."""
    uploads = await read_verify_request(request, settings.max_upload_bytes)
    result, decode_ms = await service.verify(uploads)
    return VerifyResponse.of(result, decode_ms, service.verifier.card, request.state)
