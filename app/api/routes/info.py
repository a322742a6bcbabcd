"""GET /info: the encoder card and the settings that shape answers."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import AnyKey, SettingsDep, SupervisorDep, VerifierDep
from app.schemas.responses import InfoResponse

router = APIRouter(tags=["model"])


@router.get("/info", response_model=InfoResponse, dependencies=[AnyKey])
async def info(verifier: VerifierDep, settings: SettingsDep, supervisor: SupervisorDep) -> InfoResponse:
    """Architecture, input, embedding size, distance, operating points with measured error rates,
    evaluation results and provenance, as the card records them; plus the active settings and how
    probes are judged against enrolled subjects."""
    return InfoResponse.of(verifier, settings, supervisor.storage if supervisor else None)
