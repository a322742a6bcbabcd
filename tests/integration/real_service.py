"""The service in process with the shipped weights, for integration tests that need the real model.

The same lifespan pattern as test_service_real_faces.py: start the app, wait for the background
load and warm-up, talk to it through httpx's ASGI transport, shut it down on exit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from model.paths import DEFAULT_ENCODER_DIR, WEIGHTS_DIR

ENCODER_DIR = DEFAULT_ENCODER_DIR  # what the service ships
DETECTORS_DIR = WEIGHTS_DIR


def skip_unless_shipped_model() -> None:
    """Decisions use the card's default operating point, so the card must be calibrated."""
    for folder in (ENCODER_DIR, DETECTORS_DIR / "mtcnn", DETECTORS_DIR / "yunet-2023mar"):
        if not folder.is_dir():
            pytest.skip(f"shipped weights missing: {folder}")
    card = json.loads((ENCODER_DIR / "model.json").read_text())
    mode = "flip" if card.get("inference", {}).get("flip_tta") else "plain"
    if not card.get("calibration", {}).get(mode):
        pytest.skip(f"{ENCODER_DIR / 'model.json'} has no {mode!r} calibration yet (run `facever calibrate`)")


@asynccontextmanager
async def real_service(**settings: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app on the shipped weights, ready, and a client of it. Settings are explicit (no FACEVER_*
    variable of the developer's shell applies) so the tests see the documented defaults."""
    skip_unless_shipped_model()
    values = {field: info.default for field, info in Settings.model_fields.items()}
    values.update(weights_dir=ENCODER_DIR, detectors_dir=DETECTORS_DIR, **settings)
    app = create_app(Settings(**values))
    async with app.router.lifespan_context(app):
        async with asyncio.timeout(120):  # the models load in the background after start-up
            while not app.state.ready:
                assert app.state.startup_error is None, app.state.startup_error
                await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://facever.test", timeout=60) as client:
            yield app, client
