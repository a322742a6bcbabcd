"""Health probes; always open (no API key), so orchestrators need no secret."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import SupervisorDep, VerifierDep
from app.schemas.responses import LiveResponse, ModelRef, ReadyResponse

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    """200 while the process serves requests."""
    return LiveResponse()


@router.get("/ready", response_model=ReadyResponse, responses={503: {"description": "not_ready"}})
async def ready(verifier: VerifierDep, supervisor: SupervisorDep) -> ReadyResponse:
    """200 once the encoder and detector are loaded and warmed up; 503 not_ready before that, and
    after a failed start-up (the details are in the log, not in the answer). `storage` says whether
    the subject database answers; it does not make the service unready, since /verify and /embed
    need none (and every replica shares the database: an outage would take them all out)."""
    return ReadyResponse(model=ModelRef.of(verifier.card), storage="off" if supervisor is None else supervisor.status)
