"""The FastAPI application. Importing this module loads no model: `app` is ready for uvicorn.

The lifespan loads the verifier in a background task and yields at once, so uvicorn opens its port
straight away: /health/live answers 200 during start-up and /health/ready 503 not_ready until the
model is loaded and warmed up. A failed load stops the process, so an orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.api.routes import (
    audit,
    demo,
    duplicates,
    embed,
    galleries,
    gallery_search,
    group,
    health,
    info,
    keys,
    metrics,
    subject_faces,
    verify,
)
from app.allocator import tune_allocator
from app.errors import install_error_handlers
from app.limiter import InferenceLimiter
from app.logging import REQUEST_ID_HEADER, configure_logging, get_logger
from app.metrics import ServiceMetrics
from app.middleware import RequestMiddleware
from app.security import FailedAuthentications, RateLimiter
from app.services.duplicates import ReportRunner
from app.services.keys import KeyRing
from app.settings import Settings
from app.storage import open_storage
from app.storage.search_index import SearchIndex
from app.storage.supervisor import StorageSupervisor
from model.verify.verifier import Verifier

logger = get_logger("app")

VerifierFactory = Callable[[Settings], Verifier]


def load_verifier(settings: Settings) -> Verifier:
    """The real pipeline from the configured weights folders."""
    from model.verify.pipeline import FaceVerifier  # the networks load at start-up, not on import

    return FaceVerifier.from_folders(
        settings.encoder_dir,
        settings.detectors_dir,
        detector=settings.detector,
        flip_tta=settings.flip_tta,
        face_policy=settings.face_policy,
        min_face_size=settings.min_face_size,
        precision=settings.precision,
        engine=settings.engine,
        threads=settings.threads_per_inference,
        streams=settings.max_concurrency,
    )


def terminate_self() -> None:
    """Ask uvicorn to shut down, as an orchestrator would. uvicorn (>= 0.29) re-raises the captured
    SIGTERM after its graceful shutdown, so the process dies by the signal (exit status 143, not 0)
    and is restarted like any crashed container."""
    os.kill(os.getpid(), signal.SIGTERM)


def create_app(
    settings: Settings | None = None,
    verifier_factory: VerifierFactory | None = None,
    exit_process: Callable[[], None] = terminate_self,
) -> FastAPI:
    """exit_process is called when loading fails; tests pass a stand-in so the test process survives."""
    settings = settings or Settings()
    make_verifier = verifier_factory or load_verifier
    service_metrics = ServiceMetrics()

    def build() -> Verifier:
        logger.info("loading encoder %s (detectors from %s)", settings.encoder_dir, settings.detectors_dir)
        return make_verifier(settings)

    async def load(app: FastAPI) -> None:
        """Build and warm up the verifier off the event loop, on the inference threads themselves;
        mark ready last, once it can serve."""
        limiter = InferenceLimiter(
            settings.max_concurrency, settings.max_queue, settings.request_timeout_s, service_metrics
        )
        try:
            verifier = await limiter.prepare(build)
            await limiter.prepare(verifier.warm_up)
        except Exception as error:
            logger.exception("start-up failed: could not load or warm up the model; stopping the process")
            app.state.startup_error = error
            limiter.close()
            exit_process()
            return
        app.state.verifier = verifier
        app.state.limiter = limiter
        app.state.ready = True
        logger.info("ready: %s %s", verifier.card.name, verifier.card.version)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        tune_allocator()  # before the inference threads and the models' memory exist
        tasks = [asyncio.create_task(load(app))]
        if app.state.storage is not None:
            tasks.append(asyncio.create_task(app.state.storage.watch()))
        try:
            yield
        finally:
            app.state.ready = False  # stop advertising readiness while draining
            # Cancelling stops the wait; a step already running in its thread still runs to its end.
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if app.state.limiter is not None:
                app.state.limiter.close()
            if app.state.storage is not None:
                await app.state.storage.close()

    app = FastAPI(
        title="facever",
        summary="Face verification: are two faces the same person? Plus face embeddings.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = service_metrics
    app.state.verifier = None
    app.state.limiter = None
    app.state.ready = False
    app.state.startup_error = None
    # Subjects are served where a store is configured; opening connects to nothing yet.
    app.state.storage = None if settings.storage_url == "off" else StorageSupervisor(
        open_storage(settings.storage_url, settings.template_cipher()), settings.audit_retention_days)
    app.state.search_index = SearchIndex()
    app.state.report_runner = ReportRunner()
    app.state.key_ring = KeyRing(settings, app.state.storage)
    app.state.rate_limiter = RateLimiter()
    app.state.failed_authentications = FailedAuthentications(settings.auth_failure_limit,
                                                             settings.auth_failure_window_s)

    install_error_handlers(app)
    app.include_router(health.router)
    if settings.demo:
        app.include_router(demo.router)
    for module in (verify, embed, group, info, metrics):  # each route names the scope it needs (app.api.deps)
        app.include_router(module.router)
    if app.state.storage is not None:
        for module in (galleries, subject_faces, gallery_search, duplicates, keys, audit):
            app.include_router(module.router)

    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_upload_bytes, metrics=service_metrics)
    if settings.cors_origins:  # added last, so it wraps everything, error responses included
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
        )
    return app


app = create_app()
