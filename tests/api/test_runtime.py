"""Start-up and readiness, bounded concurrency (overload), deadlines (timeout)."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import pytest

from app.errors import ServiceError
from app.limiter import InferenceLimiter
from app.logging import log_handler
from app.main import create_app
from app.metrics import ServiceMetrics
from tests.api.conftest import FakeVerifier, make_app, make_settings
from tests.metrics import sample
from tests.service import Lifespan, client_for
from tests.support.answers import refused
from tests.support.images import image_bytes

pytestmark = pytest.mark.anyio


def verify_files() -> dict:
    return {"files": {"image1": ("a.jpg", image_bytes()), "image2": ("b.jpg", image_bytes())}}


async def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_live_at_once_and_ready_only_after_loading_and_warm_up():
    loading = threading.Event()
    verifier = FakeVerifier()

    def slow_factory(settings):
        loading.wait(5)
        return verifier

    app = create_app(make_settings(), verifier_factory=slow_factory)
    lifespan = Lifespan(app)
    await lifespan.begin_startup()
    await lifespan.wait_started()  # start-up completes while the model still loads
    async with client_for(app) as client:
        assert (await client.get("/health/live")).status_code == 200
        refused(await client.get("/health/ready"), 503, "not_ready")
        refused(await client.post("/verify", **verify_files()), 503, "not_ready")
        refused(await client.get("/info"), 503, "not_ready")
        loading.set()
        await lifespan.wait_ready()
        assert verifier.warmed_up and app.state.limiter is not None
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "model": {"name": "fake-encoder", "version": "0.0-test"}, "storage": "off"}
        await lifespan.shut_down()
        refused(await client.get("/health/ready"), 503, "not_ready")


async def test_failed_start_up_is_logged_not_ready_and_exits():
    exits = []

    def broken_factory(settings):
        raise FileNotFoundError("no model.json in /nonexistent/encoder")

    app = create_app(make_settings(), verifier_factory=broken_factory, exit_process=lambda: exits.append(True))
    lifespan = Lifespan(app)
    stream = io.StringIO()
    previous = log_handler.setStream(stream)
    try:
        await lifespan.begin_startup()
        await lifespan.wait_started()
        await lifespan.wait_ready()
    finally:
        log_handler.setStream(previous)
    assert isinstance(app.state.startup_error, FileNotFoundError)
    assert exits == [True] and not app.state.ready
    assert "start-up failed" in stream.getvalue() and "no model.json" in stream.getvalue()  # the traceback
    async with client_for(app) as client:
        assert (await client.get("/health/live")).status_code == 200
        body = refused(await client.get("/health/ready"), 503, "not_ready")
        assert "start-up failed" in body["error"]["message"] and "model.json" not in body["error"]["message"]
        refused(await client.post("/verify", **verify_files()), 503, "not_ready")
    await lifespan.shut_down()


async def test_failed_warm_up_also_exits():
    exits = []
    verifier = FakeVerifier()
    verifier.warm_up = lambda: 1 / 0
    app = create_app(make_settings(), verifier_factory=lambda _: verifier, exit_process=lambda: exits.append(True))
    lifespan = Lifespan(app)
    await lifespan.begin_startup()
    await lifespan.wait_started()
    await lifespan.wait_ready()
    assert isinstance(app.state.startup_error, ZeroDivisionError) and exits == [True] and not app.state.ready
    await lifespan.shut_down()


async def test_shutdown_while_loading_cancels_the_load():
    loading = threading.Event()
    exits = []

    def slow_factory(settings):
        loading.wait(5)
        return FakeVerifier()

    app = create_app(make_settings(), verifier_factory=slow_factory, exit_process=lambda: exits.append(True))
    lifespan = Lifespan(app)
    await lifespan.begin_startup()
    await lifespan.wait_started()
    await lifespan.shut_down()  # does not wait for the blocked factory
    loading.set()
    await asyncio.sleep(0.05)
    assert not app.state.ready and app.state.verifier is None
    assert app.state.startup_error is None and exits == []


async def test_overloaded_when_running_and_queue_are_full(serve):
    gate = threading.Event()
    verifier = FakeVerifier(gate=gate)
    app = make_app(verifier, max_concurrency=1, max_queue=1)
    client = await serve(app)
    running = asyncio.create_task(client.post("/verify", **verify_files()))
    await wait_for(verifier.entered.is_set)
    queued = asyncio.create_task(client.post("/verify", **verify_files()))
    await wait_for(lambda: app.state.limiter.admitted == 2)

    overloaded = await client.post("/verify", **verify_files())
    refused(overloaded, 503, "overloaded")
    assert overloaded.headers["Retry-After"] == "1"

    gate.set()
    assert (await running).status_code == 200 and (await queued).status_code == 200
    assert app.state.limiter.admitted == 0
    assert sample((await client.get("/metrics")).text, "facever_inference_rejected_total", reason="overloaded") == 1.0


async def test_timeout_when_inference_outlives_the_deadline(serve):
    gate = threading.Event()
    verifier = FakeVerifier(gate=gate)
    app = make_app(verifier, request_timeout_s=0.1)
    client = await serve(app)
    response = await client.post("/verify", **verify_files())
    refused(response, 503, "timeout")
    assert int(response.headers["Retry-After"]) >= 1
    assert app.state.limiter.admitted == 1  # the abandoned inference still holds its slot
    gate.set()
    await wait_for(lambda: app.state.limiter.admitted == 0)
    assert sample((await client.get("/metrics")).text, "facever_inference_rejected_total", reason="timeout") == 1.0


async def test_concurrency_is_bounded():
    running, peak = 0, 0
    lock = threading.Lock()

    def work():
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return "done"

    limiter = InferenceLimiter(max_concurrency=2, max_queue=10, timeout_s=5, metrics=ServiceMetrics())
    results = await asyncio.gather(*(limiter.run("verify", work) for _ in range(8)))
    assert results == ["done"] * 8 and peak == 2 and limiter.admitted == 0


async def test_waiting_past_the_deadline_frees_the_queue_place():
    limiter = InferenceLimiter(max_concurrency=1, max_queue=1, timeout_s=0.05, metrics=ServiceMetrics())
    release = threading.Event()
    first = asyncio.create_task(limiter.run("verify", lambda: release.wait(5)))
    await wait_for(lambda: limiter.admitted == 1)
    with pytest.raises(ServiceError) as waited:
        await limiter.run("verify", lambda: "never runs")
    assert waited.value.code == "timeout" and limiter.admitted == 1
    release.set()
    with pytest.raises(ServiceError):  # the first request's own deadline had passed as well
        await first
    await wait_for(lambda: limiter.admitted == 0)


async def test_errors_inside_the_inference_propagate():
    limiter = InferenceLimiter(max_concurrency=1, max_queue=0, timeout_s=5, metrics=ServiceMetrics())

    def fail():
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await limiter.run("embed", fail)
    assert limiter.admitted == 0


async def test_cancelled_requests_free_their_place_only_when_their_work_ends():
    """A client that disconnects cancels its request: a waiting one leaves the queue at once, a
    running one keeps its slot until its thread ends, and no slot is lost either way."""
    limiter = InferenceLimiter(max_concurrency=1, max_queue=1, timeout_s=5, metrics=ServiceMetrics())
    release = threading.Event()
    running = asyncio.create_task(limiter.run("verify", lambda: release.wait(5)))
    await wait_for(lambda: limiter.admitted == 1)
    waiting = asyncio.create_task(limiter.run("verify", lambda: "never runs"))
    await wait_for(lambda: limiter.admitted == 2)

    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert limiter.admitted == 1
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert limiter.admitted == 1  # the thread still runs
    release.set()
    await wait_for(lambda: limiter.admitted == 0)
    assert await asyncio.wait_for(limiter.run("verify", lambda: "served"), 1) == "served"


async def test_inference_runs_on_its_own_threads(serve):
    class RecordingVerifier(FakeVerifier):
        def detect(self, images, every_face=False):
            threads.add(threading.current_thread().name)
            return super().detect(images)

    threads: set[str] = set()
    client = await serve(make_app(RecordingVerifier(), max_concurrency=2))
    for _ in range(6):
        assert (await client.post("/verify", **verify_files())).status_code == 200
    assert threads and all(name.startswith("inference") for name in threads) and len(threads) <= 2
