"""Every dependency of the routes, as an Annotated alias: the settings, the metrics, the application
services, and the API-key checks. Routes take these and never reach into the app's state."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.errors import ServiceError
from app.metrics import ServiceMetrics
from app.services.enrolment import EnrolmentService
from app.services.galleries import GalleryService
from app.services.search import SearchService
from app.services.verification import VerificationService
from app.settings import Settings
from app.storage.base import Storage
from app.storage.supervisor import StorageSupervisor
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


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def require_api_key(settings: SettingsDep, given: Annotated[str | None, Security(api_key_header)]) -> None:
    """Any accepted key (write keys included) where keys are configured."""
    keys = settings.api_keys + settings.write_api_keys if settings.api_keys else ()
    if keys and (given is None or not key_matches(given, keys)):
        raise ServiceError("unauthorized", "a valid X-API-Key header is required")


def require_write_key(settings: SettingsDep, given: Annotated[str | None, Security(api_key_header)]) -> None:
    """Enrolling and deleting need a write key where write keys are configured."""
    keys = settings.write_api_keys
    if keys and (given is None or not key_matches(given, keys)):
        if given is None:
            raise ServiceError("unauthorized", "a valid X-API-Key header is required")
        raise ServiceError("forbidden", "this key may read but not enrol or delete; use a write key")


def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


def get_verifier(request: Request) -> Verifier:
    """The loaded verifier, or 503 not_ready while start-up (loading and warm-up) is unfinished, or
    after it failed."""
    state = request.app.state
    if state.startup_error is not None:
        raise ServiceError("not_ready", "start-up failed; the service is shutting down")
    if not state.ready:
        raise ServiceError("not_ready", "the model is still loading; retry shortly")
    return state.verifier


def get_storage_supervisor(request: Request) -> StorageSupervisor | None:
    """The subject store's supervisor; None where storage is off."""
    return request.app.state.storage


SupervisorDep = Annotated[StorageSupervisor | None, Depends(get_storage_supervisor)]


def get_storage(supervisor: SupervisorDep) -> Storage:
    """The subject store once its schema is ready, else 503 storage_unavailable."""
    return supervisor.get()


MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
VerifierDep = Annotated[Verifier, Depends(get_verifier)]
StorageDep = Annotated[Storage, Depends(get_storage)]
WriteKey = Depends(require_write_key)


def get_verification(request: Request, verifier: VerifierDep, settings: SettingsDep,
                     metrics: MetricsDep) -> VerificationService:
    return VerificationService(verifier, request.app.state.limiter, settings, metrics)


VerificationDep = Annotated[VerificationService, Depends(get_verification)]


def get_galleries(request: Request, storage: StorageDep) -> GalleryService:
    return GalleryService(storage, request.app.state.search_index)


def get_enrolment(supervisor: SupervisorDep, verification: VerificationDep, storage: StorageDep,
                  settings: SettingsDep) -> EnrolmentService:
    return EnrolmentService(storage, verification, supervisor.salt, settings)


def get_search(request: Request, verification: VerificationDep, storage: StorageDep) -> SearchService:
    return SearchService(storage, verification, request.app.state.search_index)


GalleriesDep = Annotated[GalleryService, Depends(get_galleries)]
EnrolmentDep = Annotated[EnrolmentService, Depends(get_enrolment)]
SearchDep = Annotated[SearchService, Depends(get_search)]
