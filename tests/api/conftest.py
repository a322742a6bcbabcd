"""Plumbing tests of the HTTP layer against a fake verifier (no torch, no weights).

The fake "detects" one face per 100 pixels of image width (none below 100), and embeds an image as
its normalised mean colour, so same-coloured images are the same person and others are not. Its
card and its decisions are the real ones.
"""

from __future__ import annotations

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
from model.card import EncoderCard
from model.errors import MultipleFaces, NoFaceDetected
from model.types import Face
from model.verify.decision import Decision, embedding_distance, resolve_decision
from model.verify.results import FaceEmbedding, Verification
from tests.service import running

RED, BLUE = (200, 30, 30), (30, 30, 200)


def image_bytes(color: tuple[int, int, int] = RED, size: tuple[int, int] = (100, 100), fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def fake_card(calibrated: bool = True) -> EncoderCard:
    """A real card, of a 4-d encoder that does not exist, with two operating points and a logistic map."""
    calibration = {"plain": {
        "default": "far_1e-3",
        "operating_points": {
            "far_1e-3": {"threshold": 0.5, "description": "strict", "held_out": {"far": 0.001, "frr": 0.02}},
            "eer": {"threshold": 0.6, "description": "balanced", "held_out": {"far": 0.01, "frr": 0.01}},
        },
        "probability": {"a": -10.0, "b": 5.0},
    }}
    return EncoderCard(
        name="fake-encoder",
        version="0.0-test",
        architecture={"name": "fake"},
        input=[{"size": 4, "channels": "RGB", "range": "0..255", "mean": 0.0, "scale": 1.0}],
        alignment=[{"size": 4, "points": [[1, 1], [3, 1], [2, 2], [1, 3], [3, 3]]}],
        embedding_dim=4,
        calibration=calibration if calibrated else None,
    )


@dataclass
class FakeVerifier:
    """The service's Verifier without torch: the decision is the real one (model.verify.decision)."""

    calibrated: bool = True
    gate: threading.Event | None = None  # when set, each inference waits for it
    entered: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None
    face_policy: str = "largest"
    flip_tta: bool = False
    precision: str = "float32"
    engine: str = "torch"
    detector: Any = field(default_factory=lambda: SimpleNamespace(settings={"name": "fake-detector"}))
    warmed_up: bool = False

    def __post_init__(self) -> None:
        self.card = fake_card(self.calibrated)
        self.calibration = self.card.calibration_for(self.flip_tta)

    def warm_up(self) -> None:
        self.warmed_up = True

    def _choose(self, image: Image.Image, policy: str, label: str) -> FaceEmbedding:
        count = image.width // 100
        if count == 0:
            raise NoFaceDetected(f"{label}: no face detected")
        if count > 1 and policy == "reject":
            raise MultipleFaces(f"{label}: {count} faces detected")
        landmarks = ((30, 40), (70, 40), (50, 60), (35, 75), (65, 75))
        face = Face(box=(10.0, 10.0, 90.0, 90.0), score=0.99, landmarks=landmarks)
        mean = np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(axis=0)
        vector = np.append(mean, 1.0)
        return FaceEmbedding(face, count, (vector / np.linalg.norm(vector)).astype(np.float32))

    def embed(self, images, policy=None, labels=None):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        if self.error is not None:
            raise self.error
        labels = labels or [f"image {i + 1}" for i in range(len(images))]
        chosen = [self._choose(image, policy or self.face_policy, label) for image, label in zip(images, labels)]
        return chosen, {"detect": 1.0, "align": 0.5, "embed": 2.0}

    def decision(self, threshold=None, operating_point=None) -> Decision:
        return resolve_decision(self.calibration, threshold, operating_point)

    def verify(self, image1, image2, decision, *, policy=None, labels=("image1", "image2")) -> Verification:
        (first, second), timings = self.embed([image1, image2], policy, labels)
        verdict = decision.judge(embedding_distance(first.embedding, second.embedding))
        return Verification(verdict=verdict, faces=(first, second), timings_ms=timings)


def make_settings(**overrides: Any) -> Settings:
    return Settings(weights_dir=Path("/nonexistent/encoder"), detectors_dir=Path("/nonexistent/detectors"), **overrides)


def make_app(verifier: FakeVerifier | None = None, **settings: Any) -> FastAPI:
    verifier = verifier or FakeVerifier()
    return create_app(make_settings(**settings), verifier_factory=lambda _: verifier)


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
            client = await stack.enter_async_context(running(app))
            apps.append(app)
            return client

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
