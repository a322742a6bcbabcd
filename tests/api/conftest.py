"""Plumbing tests of the HTTP layer against a fake verifier (no torch, no weights).

The fake "detects" one face per 100 pixels of image width (none below 100; see fake_face), and
embeds a face as the normalised mean colour of its box, so same-coloured faces are the same person
and others are not. Its card, its face choice and its decisions are the real ones
(model.verify.verifier.Verifier).
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from model.card import EncoderCard
from model.types import Face
from model.verify.verifier import Verifier
from tests.service import running

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
        grouping={"plain": {"rule": "average_linkage", "threshold": 0.1, "link_far": 1e-5, "view1": {}}}
        if calibrated else None,
    )


def fake_face(column: int) -> Face:
    """The fake detector's face in a 100-pixel column: the 80x80 square 10 pixels in."""
    x = column * 100
    landmarks = ((x + 30, 40), (x + 70, 40), (x + 50, 60), (x + 35, 75), (x + 65, 75))
    return Face(box=(x + 10.0, 10.0, x + 90.0, 90.0), score=0.99, landmarks=landmarks)


class FakeVerifier(Verifier):
    """The service's Verifier, its rules the real ones (model.verify.verifier), over fake networks."""

    def __init__(
        self,
        calibrated: bool = True,
        gate: threading.Event | None = None,  # when set, each inference waits for it
        error: Exception | None = None,
        face_policy: str = "subject",
        flip_tta: bool = False,
    ):
        super().__init__(fake_card(calibrated), flip_tta=flip_tta, face_policy=face_policy)
        self.gate = gate
        self.error = error
        self.entered = threading.Event()
        self.detector = SimpleNamespace(settings={"name": "fake-detector"})
        self.warmed_up = False

    def warm_up(self) -> None:
        self.warmed_up = True

    def detect(self, images: Sequence[np.ndarray], every_face: bool = False) -> list[list[Face]]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        if self.error is not None:
            raise self.error
        return [[fake_face(column) for column in range(image.shape[1] // 100)] for image in images]

    def encode(self, views: Sequence[tuple[np.ndarray, Face]]) -> tuple[np.ndarray, dict[str, float], None]:
        vectors = []
        for image, face in views:
            x1, y1, x2, y2 = (int(round(value)) for value in face.box)
            mean = image[max(y1, 0) : y2, max(x1, 0) : x2].reshape(-1, 3).mean(axis=0)
            vector = np.append(mean, 1.0)
            vectors.append(vector / np.linalg.norm(vector))
        return np.asarray(vectors, dtype=np.float32).reshape(-1, 4), {"align": 0.5, "embed": 2.0}, None


def make_settings(**overrides: Any) -> Settings:
    overrides.setdefault("storage_url", "off")  # the subject tests give a database of their own
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
