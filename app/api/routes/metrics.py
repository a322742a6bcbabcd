"""GET /metrics: Prometheus text exposition."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from app.api.deps import AnyKey, MetricsDep
from app.metrics import EXPOSITION_CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=PlainTextResponse, dependencies=[AnyKey])
async def metrics(service_metrics: MetricsDep) -> PlainTextResponse:
    """Request counts and latency by route and status, inference time, faces detected, refusals,
    and the process's own (resident memory, CPU time, open file descriptors)."""
    return PlainTextResponse(service_metrics.render(), media_type=EXPOSITION_CONTENT_TYPE)
