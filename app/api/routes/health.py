"""Health probes; always open (no API key), so orchestrators need no secret."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import get_verifier
from app.errors import ServiceError
from app.schemas.responses import LiveResponse, ModelRef, ReadyResponse

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    """200 while the process serves requests."""
    return LiveResponse()


@router.get("/ready", response_model=ReadyResponse, responses={503: {"description": "not_ready"}})
async def ready(request: Request) -> ReadyResponse:
    """200 once the encoder and detector are loaded and warmed up; 503 not_ready before that, and
    after a failed start-up (the details are in the log, not in the answer). `storage` says whether
    the subject database answers; it does not make the service unready, since /verify and /embed
    need none (and every replica shares the database: an outage would take them all out)."""
    if request.app.state.startup_error is not None:
        raise ServiceError("not_ready", "start-up failed; the service is shutting down")
    keeper = request.app.state.storage
    return ReadyResponse(model=ModelRef.of(get_verifier(request).card),
                         storage="off" if keeper is None else keeper.status)
