"""The service in process, for tests: one driver of the app's ASGI lifespan, and a client over it.

`Lifespan` drives start-up and shutdown by hand, so a test can send requests while the model still
loads; `running(app)` is the usual case: started, loaded and warmed up, then shut down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI


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


def client_for(app: FastAPI, timeout_s: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://facever.test", timeout=timeout_s)


@asynccontextmanager
async def running(app: FastAPI, ready_timeout_s: float = 10.0, client_timeout_s: float = 5.0) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app` once it has started, loaded and warmed up; shut down on exit."""
    lifespan = Lifespan(app)
    await lifespan.begin_startup()
    await lifespan.wait_started()
    try:
        await lifespan.wait_ready(ready_timeout_s)
        assert app.state.ready, app.state.startup_error
        async with client_for(app, client_timeout_s) as client:
            yield client
    finally:
        await lifespan.shut_down()


async def storage_becomes(client: httpx.AsyncClient, status: str, timeout_s: float = 30) -> None:
    """Wait until /health/ready reports the subject store `status` (ok, unavailable)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        if ready.json()["storage"] == status:
            return
        assert time.monotonic() < deadline, f"storage stayed {ready.json()['storage']!r}, never {status!r}"
        await asyncio.sleep(0.05)
