"""GET /info: the encoder card and the settings that shape answers."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import SettingsDep, VerifierDep
from app.schemas.responses import InfoResponse

router = APIRouter(tags=["model"])


@router.get("/info", response_model=InfoResponse)
async def info(verifier: VerifierDep, settings: SettingsDep, request: Request) -> InfoResponse:
    """Architecture, input, embedding size, distance, operating points with measured error rates,
    evaluation results and provenance, as the card records them; plus the active settings and how
    probes are judged against enrolled subjects."""
    keeper = request.app.state.storage
    return InfoResponse.of(verifier, settings, keeper.storage if keeper else None)
