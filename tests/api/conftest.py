"""Plumbing tests of the HTTP layer against a fake verifier (no torch, no weights).

The fake "detects" one face per 100 pixels of image width (none below 100), and embeds an image as
its normalised mean colour, so same-coloured images are the same person and others are not.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image

from app.main import create_app
from app.settings import Settings
from model.errors import InputError, MultipleFaces, NoFaceDetected
from model.faces.types import Face

RED, BLUE = (200, 30, 30), (30, 30, 200)


def image_bytes(color: tuple[int, int, int] = RED, size: tuple[int, int] = (100, 100), fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


@dataclass(frozen=True)
class FakeFaceEmbedding:
    face: Face
    faces_detected: int
    embedding: np.ndarray


@dataclass(frozen=True)
class FakeVerification:
    same: bool
    distance: float
    threshold: float
    operating_point: Any
    probability_same: float | None
    faces: tuple[FakeFaceEmbedding, FakeFaceEmbedding]
    timings_ms: dict[str, float]


def fake_calibration() -> SimpleNamespace:
    points = {
        "far_1e-3": SimpleNamespace(name="far_1e-3", threshold=0.5, far=0.001, frr=0.02, description="strict"),
        "eer": SimpleNamespace(name="eer", threshold=0.6, far=0.01, frr=0.01, description="balanced"),
    }
    return SimpleNamespace(default="far_1e-3", operating_points=points, probability_same=lambda d: round(1 - d / 2, 4))


@dataclass
class FakeVerifier:
    calibrated: bool = True
    gate: threading.Event | None = None  # when set, each inference waits for it
    entered: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None
    face_policy: str = "largest"
    flip_tta: bool = False
    precision: str = "float32"
    detector: Any = field(default_factory=lambda: SimpleNamespace(settings={"name": "fake-detector"}))
    warmed_up: bool = False

    def __post_init__(self) -> None:
        self.card = SimpleNamespace(
            name="fake-encoder", version="0.0-test", embedding_dim=4, data={"name": "fake-encoder", "embedding_dim": 4}
        )
        self.calibration = fake_calibration() if self.calibrated else None

    def warm_up(self) -> None:
        self.warmed_up = True

    def _choose(self, image: Image.Image, policy: str, label: str) -> FakeFaceEmbedding:
        count = image.width // 100
        if count == 0:
            raise NoFaceDetected(f"{label}: no face detected")
        if count > 1 and policy == "reject":
            raise MultipleFaces(f"{label}: {count} faces detected")
        landmarks = ((30, 40), (70, 40), (50, 60), (35, 75), (65, 75))
        face = Face(box=(10.0, 10.0, 90.0, 90.0), score=0.99, landmarks=landmarks)
        mean = np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(axis=0)
        vector = np.append(mean, 1.0)
        return FakeFaceEmbedding(face, count, (vector / np.linalg.norm(vector)).astype(np.float32))

    def embed(self, images, policy=None, labels=None):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        if self.error is not None:
            raise self.error
        labels = labels or [f"image {i + 1}" for i in range(len(images))]
        chosen = [self._choose(image, policy or self.face_policy, label) for image, label in zip(images, labels)]
        return chosen, {"detect": 1.0, "align": 0.5, "embed": 2.0}

    def resolve_threshold(self, threshold=None, operating_point=None):
        if threshold is not None:
            return threshold, None
        if self.calibration is None:
            raise InputError("no calibrated operating points; give an explicit threshold", "invalid_request")
        name = operating_point or self.calibration.default
        if name not in self.calibration.operating_points:
            raise InputError(f"unknown operating point {name!r}", "invalid_request")
        point = self.calibration.operating_points[name]
        return point.threshold, point

    def verify(self, image1, image2, *, threshold=None, operating_point=None, policy=None, labels=("image1", "image2")):
        threshold, point = self.resolve_threshold(threshold, operating_point)
        (first, second), timings = self.embed([image1, image2], policy, labels)
        distance = float(np.linalg.norm(first.embedding.astype(np.float64) - second.embedding))
        return FakeVerification(
            same=distance <= threshold,
            distance=distance,
            threshold=threshold,
            operating_point=point,
            probability_same=self.calibration.probability_same(distance) if self.calibration else None,
            faces=(first, second),
            timings_ms=timings,
        )


def make_settings(**overrides: Any) -> Settings:
    return Settings(weights_dir=Path("/nonexistent/encoder"), detectors_dir=Path("/nonexistent/detectors"), **overrides)


def make_app(verifier: FakeVerifier | None = None, **settings: Any) -> FastAPI:
    verifier = verifier or FakeVerifier()
    return create_app(make_settings(**settings), verifier_factory=lambda _: verifier)


class Lifespan:
    """Drives an app's ASGI lifespan by hand, so a test can send requests while start-up still runs."""

    def __init__(self, app: FastAPI):
        self.app = app
        self._to_app: asyncio.Queue[dict] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def begin_startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})

    async def wait_started(self) -> None:
        message = await asyncio.wait_for(self._from_app.get(), 10)
        if message["type"] != "lifespan.startup.complete":
            await self._task  # re-raises the start-up error
            raise RuntimeError(f"start-up failed: {message.get('message')}")

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Start-up completes at once; the model loads in the background until ready (or failed)."""
        state = self.app.state
        async with asyncio.timeout(timeout_s):
            while not state.ready and state.startup_error is None:
                await asyncio.sleep(0.002)

    async def shut_down(self) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        assert (await asyncio.wait_for(self._from_app.get(), 10))["type"] == "lifespan.shutdown.complete"
        await self._task


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://facever.test")


@pytest.fixture(autouse=True)
def _no_facever_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read FACEVER_* variables; a developer's shell must not change what the tests see."""
    for name in list(os.environ):
        if name.startswith("FACEVER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[FastAPI], Awaitable[httpx.AsyncClient]]]:
    """serve(app) -> a client of the app once it is ready; shut down after the test."""
    apps: list[FastAPI] = []
    async with AsyncExitStack() as stack:

        async def start(app: FastAPI) -> httpx.AsyncClient:
            lifespan = Lifespan(app)
            await lifespan.begin_startup()
            await lifespan.wait_started()
            stack.push_async_callback(lifespan.shut_down)
            await lifespan.wait_ready()
            assert app.state.ready, app.state.startup_error
            apps.append(app)
            return await stack.enter_async_context(client_for(app))

        yield start
        for app in apps:  # let blocked fake inferences finish before shutting down
            gate = getattr(app.state.verifier, "gate", None)
            if gate is not None:
                gate.set()


@pytest.fixture
async def make_client(serve) -> Callable[..., Awaitable[httpx.AsyncClient]]:
    """make_client(verifier=None, **settings) -> a client of a started app on a fake verifier."""

    async def make(verifier: FakeVerifier | None = None, **settings: Any) -> httpx.AsyncClient:
        return await serve(make_app(verifier, **settings))

    return make


@pytest.fixture
async def client(make_client) -> httpx.AsyncClient:
    return await make_client()


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    """The one error shape: {"error": {"code", "message"}, "request_id"} and the id echoed in a header."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert response.headers["X-Request-ID"] == body["request_id"]
    return body
