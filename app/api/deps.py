"""What routes depend on: the app's settings, metrics, verifier and limiter, and the API-key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.errors import ServiceError
from app.limiter import InferenceLimiter
from app.metrics import ServiceMetrics
from app.settings import Settings
from model.verify.verifier import Verifier

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="required when the service is started with FACEVER_API_KEYS"
)


def key_matches(given: str, keys: tuple[str, ...]) -> bool:
    """Compare against every key in constant time, so neither timing nor position reveals a key."""
    given_bytes = given.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given_bytes, key.encode())
    return matched


def require_api_key(request: Request, given: Annotated[str | None, Security(api_key_header)]) -> None:
    keys = request.app.state.settings.api_keys
    if keys and (given is None or not key_matches(given, keys)):
        raise ServiceError("unauthorized", "a valid X-API-Key header is required")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


def get_verifier(request: Request) -> Verifier:
    """The loaded verifier, or 503 not_ready while start-up (loading and warm-up) is unfinished."""
    if not request.app.state.ready:
        raise ServiceError("not_ready", "the model is still loading; retry shortly")
    return request.app.state.verifier


def get_limiter(request: Request) -> InferenceLimiter:
    return request.app.state.limiter


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
VerifierDep = Annotated[Verifier, Depends(get_verifier)]
LimiterDep = Annotated[InferenceLimiter, Depends(get_limiter)]
