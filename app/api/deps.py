"""What routes depend on: the app's settings, metrics, verifier, limiter and store, and the API-key checks."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.errors import ServiceError
from app.limiter import InferenceLimiter
from app.metrics import ServiceMetrics
from app.settings import Settings
from app.storage.base import Storage
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
    """Any accepted key (write keys included) where keys are configured."""
    settings = request.app.state.settings
    keys = settings.api_keys + settings.write_api_keys if settings.api_keys else ()
    if keys and (given is None or not key_matches(given, keys)):
        raise ServiceError("unauthorized", "a valid X-API-Key header is required")


def require_write_key(request: Request, given: Annotated[str | None, Security(api_key_header)]) -> None:
    """Enrolling and deleting need a write key where write keys are configured."""
    keys = request.app.state.settings.write_api_keys
    if keys and (given is None or not key_matches(given, keys)):
        if given is None:
            raise ServiceError("unauthorized", "a valid X-API-Key header is required")
        raise ServiceError("forbidden", "this key may read but not enrol or delete; use a write key")


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


def get_storage(request: Request) -> Storage:
    """The subject store once its schema is ready, else 503 storage_unavailable (StorageKeeper.get)."""
    return request.app.state.storage.get()


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
VerifierDep = Annotated[Verifier, Depends(get_verifier)]
LimiterDep = Annotated[InferenceLimiter, Depends(get_limiter)]
StorageDep = Annotated[Storage, Depends(get_storage)]
WriteKey = Depends(require_write_key)
