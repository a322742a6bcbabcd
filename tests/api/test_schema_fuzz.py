"""Schemathesis fuzzing of the published OpenAPI schema: no generated request may cause a 5xx.

The app runs on the fake verifier, so each request is cheap and the run is deterministic
(derandomised Hypothesis, no example database). /verify and /embed read their bodies by hand, but
their OpenAPI text (app.api.uploads.request_body_docs) declares both forms, so Schemathesis sends
multipart files and JSON with base64 strings alike. Random bytes almost never decode as an image,
so a hook also offers each generated body with its images replaced by real ones: the fuzzed
options then reach the verifier instead of stopping at invalid_image.

The schema is loaded at import, not from a fixture: Schemathesis's lazy `from_fixture` loader
relies on pytest internals (`Function._nodeid`) that pytest 9 no longer has.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.transport.serialization import Binary

from tests.api.conftest import make_app
from tests.support.images import BLUE, image_bytes

MAX_EXAMPLES = 200  # per operation and phase; the whole run takes a few seconds
IMAGE_FIELDS = {"image1", "image2", "images", "image"}
# the fake verifier finds one face in the first and two in the second (see conftest)
IMAGES = (image_bytes(), image_bytes(BLUE, (250, 100), "PNG"))


# With a real SQLite store, so the subject routes are fuzzed too.
APP = make_app(storage_url=f"sqlite:///{tempfile.mkdtemp(prefix='facever-fuzz-')}/facever.sqlite3")


async def _ready_when_started(scope, receive, send):
    """APP, whose start-up reports complete only once the verifier is loaded. Schemathesis starts
    and stops the app around its calls; APP loads in the background, as the real one does, so a
    call made right after start-up would otherwise race the load and get 503 not_ready."""

    async def send_when_ready(message):
        if message["type"] == "lifespan.startup.complete":
            async with asyncio.timeout(10):
                while not APP.state.ready:
                    assert APP.state.startup_error is None, APP.state.startup_error
                    await asyncio.sleep(0.001)
        await send(message)

    await APP(scope, receive, send_when_ready if scope["type"] == "lifespan" else send)


schema = schemathesis.openapi.from_asgi("/openapi.json", _ready_when_started)


def _as_generated(generated: Any, image: bytes) -> Any:
    """An image in the form the generated value had: a file part, base64 text, or left alone."""
    if isinstance(generated, Binary):  # a str subclass, so it is tested first
        return Binary(image)
    if isinstance(generated, str):
        return base64.b64encode(image).decode()
    return generated


def _with_images(body: dict, picks: tuple[int, ...]) -> dict:
    replaced = dict(body)
    for key, pick in zip(("image1", "image2"), picks, strict=True):
        if key in replaced:
            replaced[key] = _as_generated(replaced[key], IMAGES[pick])
    if "image" in replaced:
        replaced["image"] = _as_generated(replaced["image"], IMAGES[picks[0]])
    if isinstance(replaced.get("images"), list):
        replaced["images"] = [
            _as_generated(value, IMAGES[picks[index % len(picks)]]) for index, value in enumerate(replaced["images"])
        ]
    return replaced


@schema.hook
def flatmap_body(context, body):
    if not isinstance(body, dict) or not IMAGE_FIELDS & body.keys():
        return st.just(body)
    picks = st.tuples(st.integers(0, len(IMAGES) - 1), st.integers(0, len(IMAGES) - 1))
    return st.one_of(st.just(body), picks.map(lambda chosen: _with_images(body, chosen)))


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case):
    case.call_and_validate(checks=[not_a_server_error])
