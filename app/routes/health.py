"""Health probes; always open (no API key), so orchestrators need no secret."""

from __future__ import annotations

from fastapi import APIRouter

from app.routes import VerifierDep
from app.schemas import LiveResponse, ModelRef, ReadyResponse

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    """200 while the process serves requests."""
    return LiveResponse()


@router.get("/ready", response_model=ReadyResponse, responses={503: {"description": "not_ready"}})
async def ready(verifier: VerifierDep) -> ReadyResponse:
    """200 once the encoder and detector are loaded and warmed up; 503 not_ready before that."""
    return ReadyResponse(model=ModelRef.of(verifier.card))
