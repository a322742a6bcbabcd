"""Overload and deadlines with the real model in real threads (tests/api/test_runtime.py proves the
logic on a fake): the service answers the documented 503s, never another 5xx, and recovers.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.integration.real_service import real_service
from tests.metrics import sample

pytestmark = [pytest.mark.anyio, pytest.mark.data]

PHOTOS = ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg")
BURST = 8


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def pair(lfw_dir: Path) -> dict:
    first, second = ((lfw_dir / "images" / name).read_bytes() for name in PHOTOS)
    return {"files": {"image1": ("1.jpg", first), "image2": ("2.jpg", second)}}


async def wait_idle(app, timeout_s: float = 30) -> None:
    """Until every inference, including abandoned ones, has ended."""
    deadline = time.monotonic() + timeout_s
    while app.state.limiter.admitted:
        assert time.monotonic() < deadline, "inferences still running"
        await asyncio.sleep(0.01)


async def test_a_burst_beyond_capacity_is_refused_with_retry_after_and_served_after(pair):
    async with real_service(max_concurrency=1, max_queue=1) as (app, client):
        answers = await asyncio.gather(*(client.post("/verify", **pair) for _ in range(BURST)))
        refused = [answer for answer in answers if answer.status_code == 503]
        assert {answer.status_code for answer in answers} == {200, 503}
        assert {answer.json()["error"]["code"] for answer in refused} == {"overloaded"}
        assert {answer.headers["Retry-After"] for answer in refused} == {"1"}
        await wait_idle(app)
        assert (await client.post("/verify", **pair)).status_code == 200


async def test_past_the_deadline_is_a_timeout_and_the_abandoned_inference_frees_its_slot(pair):
    async with real_service(request_timeout_s=0.001, max_concurrency=1) as (app, client):
        answer = await client.post("/verify", **pair)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "timeout", answer.text
        await wait_idle(app)  # the inference ran on to its end in its thread, then let go of the slot
        assert (await client.get("/health/ready")).status_code == 200
        assert sample((await client.get("/metrics")).text, "facever_inference_rejected_total", reason="timeout") == 1.0
