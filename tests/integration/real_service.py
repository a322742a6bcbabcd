"""The service in process with the shipped weights, for integration tests that need the real model:
started, loaded and warmed up by the tests' one lifespan driver (tests/service.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from model.card import load_card
from model.paths import DEFAULT_ENCODER_DIR, WEIGHTS_DIR
from tests.service import running

ENCODER_DIR = DEFAULT_ENCODER_DIR  # what the service ships
DETECTORS_DIR = WEIGHTS_DIR


def skip_unless_shipped_model() -> None:
    """Decisions use the card's default operating point, so the card must be calibrated."""
    for folder in (ENCODER_DIR, DETECTORS_DIR / "mtcnn", DETECTORS_DIR / "yunet-2023mar"):
        if not folder.is_dir():
            pytest.skip(f"shipped weights missing: {folder}")
    card = load_card(ENCODER_DIR)
    if card.calibration_for(card.inference.flip_tta) is None:
        pytest.skip(f"{ENCODER_DIR / 'model.json'} has no calibration of its inference mode yet (run `facever calibrate`)")


@asynccontextmanager
async def real_service(**settings: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app on the shipped weights, ready, and a client of it. Settings are explicit (no FACEVER_*
    variable of the developer's shell applies) so the tests see the documented defaults."""
    skip_unless_shipped_model()
    values = {field: info.default for field, info in Settings.model_fields.items()}
    values.update({"weights_dir": ENCODER_DIR, "detectors_dir": DETECTORS_DIR, **settings})
    app = create_app(Settings(**values))
    # The models load in the background after start-up.
    async with running(app, ready_timeout_s=120, client_timeout_s=60) as client:
        yield app, client
