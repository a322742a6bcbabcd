"""Every dependency of the routes, as an Annotated alias: the settings, the metrics, the application
services, and who a request acts as (its key, checked for its scope). Routes take these and never
reach into the app's state. Every one is a coroutine: FastAPI runs a plain function dependency on its
thread pool, a thread hand-off each, several per request, for what only reads the app's state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from app.errors import ServiceError
from app.metrics import ServiceMetrics
from app.security import Principal, retry_after_header
from app.services.duplicates import DuplicateService
from app.services.enrolment import EnrolmentService
from app.services.galleries import GalleryService
from app.services.grouping import GroupingService
from app.services.keys import KeyService
from app.services.search import SearchService
from app.services.verification import VerificationService
from app.settings import Settings
from app.storage.base import Storage
from app.storage.supervisor import StorageSupervisor
from model.verify.verifier import Verifier

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False,
    description="an API key: a stored key (fvk_...), or one of FACEVER_API_KEYS; needed wherever keys exist",
)


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


async def get_verifier(request: Request) -> Verifier:
    """The loaded verifier, or 503 not_ready while start-up (loading and warm-up) is unfinished, or
    after it failed."""
    state = request.app.state
    if state.startup_error is not None:
        raise ServiceError("not_ready", "start-up failed; the service is shutting down")
    if not state.ready:
        raise ServiceError("not_ready", "the model is still loading; retry shortly")
    return state.verifier


async def get_storage_supervisor(request: Request) -> StorageSupervisor | None:
    """The subject store's supervisor; None where storage is off."""
    return request.app.state.storage


SupervisorDep = Annotated[StorageSupervisor | None, Depends(get_storage_supervisor)]


async def get_storage(supervisor: SupervisorDep) -> Storage:
    """The subject store once its schema is ready, else 503 storage_unavailable."""
    return supervisor.get()


MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
VerifierDep = Annotated[Verifier, Depends(get_verifier)]
StorageDep = Annotated[Storage, Depends(get_storage)]


def authorized(scope: str | None) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the principal a request acts as, once its address is not throttled (429), its key
    accepted (401), its rate within the key's limit (429) and `scope` granted (403; None: any key).
    Refusals are counted by key id and reason, never with the secret."""

    async def principal(request: Request, given: Annotated[str | None, Security(api_key_header)],
                        metrics: MetricsDep) -> Principal:
        state = request.app.state
        address = request.client.host if request.client else "-"
        wait = state.failed_authentications.retry_after(address)
        if wait:
            metrics.key_refusals.labels(key_id="-", reason="throttled").inc()
            raise ServiceError("rate_limited", "too many failed authentications from this address; retry later",
                               headers=retry_after_header(wait))
        ring = state.key_ring
        found = (await run_in_threadpool(ring.authenticate, given, scope) if ring.reads_store(given)
                 else ring.authenticate(given, scope))
        if found is None:
            if given:
                state.failed_authentications.record(address)
            metrics.key_refusals.labels(key_id="-", reason="unauthorized").inc()
            raise ServiceError("unauthorized", "a valid X-API-Key header is required")
        if found.rate_per_s is not None:
            wait = state.rate_limiter.admit(found.key_id, found.rate_per_s, found.burst)
            if wait:
                metrics.key_refusals.labels(key_id=found.key_id, reason="rate_limited").inc()
                raise ServiceError("rate_limited", f"key {found.key_id} is over its rate limit of "
                                   f"{found.rate_per_s:g} requests a second", headers=retry_after_header(wait))
        if scope is not None and not found.allows(scope):
            metrics.key_refusals.labels(key_id=found.key_id, reason="forbidden").inc()
            raise ServiceError("forbidden", f"this key lacks the {scope!r} scope")
        metrics.key_requests.labels(key_id=found.key_id, scope=scope or "any").inc()
        return found

    return principal


AnyKey = Depends(authorized(None))
VerifyKey = Depends(authorized("verify"))
ReadKey = Annotated[Principal, Depends(authorized("read"))]
EnrolKey = Annotated[Principal, Depends(authorized("enrol"))]
DeleteKey = Annotated[Principal, Depends(authorized("delete"))]
AdminKey = Annotated[Principal, Depends(authorized("admin"))]


async def get_verification(request: Request, verifier: VerifierDep, settings: SettingsDep,
                           metrics: MetricsDep) -> VerificationService:
    return VerificationService(verifier, request.app.state.limiter, settings, metrics)


VerificationDep = Annotated[VerificationService, Depends(get_verification)]


async def get_keys(request: Request, storage: StorageDep) -> KeyService:
    return KeyService(storage, request.app.state.key_ring)


KeysDep = Annotated[KeyService, Depends(get_keys)]


async def get_galleries(request: Request, storage: StorageDep) -> GalleryService:
    return GalleryService(storage, request.app.state.search_index)


async def get_duplicates(request: Request, verifier: VerifierDep, storage: StorageDep) -> DuplicateService:
    return DuplicateService(storage, verifier, request.app.state.search_index, request.app.state.report_runner)


DuplicatesDep = Annotated[DuplicateService, Depends(get_duplicates)]


async def get_enrolment(supervisor: SupervisorDep, verification: VerificationDep, storage: StorageDep,
                        settings: SettingsDep, duplicates: DuplicatesDep) -> EnrolmentService:
    return EnrolmentService(storage, verification, supervisor.salt, settings, duplicates)


async def get_search(request: Request, verification: VerificationDep, storage: StorageDep) -> SearchService:
    return SearchService(storage, verification, request.app.state.search_index)


async def get_grouping(verification: VerificationDep) -> GroupingService:
    return GroupingService(verification)


GroupingDep = Annotated[GroupingService, Depends(get_grouping)]
GalleriesDep = Annotated[GalleryService, Depends(get_galleries)]
EnrolmentDep = Annotated[EnrolmentService, Depends(get_enrolment)]
SearchDep = Annotated[SearchService, Depends(get_search)]
