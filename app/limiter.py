"""Bounded inference: off the event loop, on threads of its own, at most so many at once, with a deadline."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from app.errors import RETRY_AFTER_S, ServiceError
from app.metrics import ServiceMetrics

T = TypeVar("T")


class InferenceLimiter:
    """At most `max_concurrency` inferences run at once and `max_queue` more may wait; anyone beyond
    that is refused at once with `overloaded`, so a burst cannot pile up unbounded memory and latency.

    The deadline covers waiting plus inference. A thread cannot be stopped, so an inference past its
    deadline keeps its slot until it really ends: the limit bounds the CPU work actually running,
    not only the requests still being waited on.
    """

    def __init__(self, max_concurrency: int, max_queue: int, timeout_s: float, metrics: ServiceMetrics):
        # Inference gets threads of its own, as many as may run at once: the engines keep per-thread
        # state (an OpenVINO infer request per calling thread; on the torch engine, a pool of
        # intra-op workers), and asyncio's shared pool would rotate requests over up to 32 callers,
        # each with its own state competing for the memory and the cores (see prepare()).
        self._threads = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="inference")
        self._slots = asyncio.Semaphore(max_concurrency)
        self._capacity = max_concurrency + max_queue
        self._timeout_s = timeout_s
        self._metrics = metrics
        self.admitted = 0  # waiting or running, including inferences whose request timed out

    async def run(self, operation: str, work: Callable[[], T]) -> T:
        if self.admitted >= self._capacity:
            self._metrics.inference_rejected.labels(reason="overloaded").inc()
            raise ServiceError(
                "overloaded",
                f"the service is busy ({self.admitted} requests running or waiting); retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.admitted += 1
        job: asyncio.Future[T] | None = None
        deadline = asyncio.timeout(self._timeout_s)
        try:
            async with deadline:
                await self._slots.acquire()
                job = self._on_inference_thread(functools.partial(self._timed, operation, work))
                job.add_done_callback(self._release)
                return await asyncio.shield(job)
        except TimeoutError:
            if not deadline.expired():
                raise
            self._metrics.inference_rejected.labels(reason="timeout").inc()
            raise ServiceError(
                "timeout", f"no answer within {self._timeout_s:g} s", headers={"Retry-After": str(RETRY_AFTER_S)}
            ) from None
        finally:
            if job is None:  # gave up (deadline or cancellation) before getting a slot
                self.admitted -= 1

    def _timed(self, operation: str, work: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return work()
        finally:
            self._metrics.inference_seconds.labels(operation=operation).observe(time.perf_counter() - started)

    async def prepare(self, work: Callable[[], T]) -> T:
        """Run set-up work (loading, warm-up) on the inference threads, outside the limits, so the
        per-thread state warm-up creates (infer requests, alignment's buffers; on the torch engine,
        OpenMP's worker team, which made each inference about half again slower when loading ran on
        another thread) is the state requests use."""
        return await self._on_inference_thread(work)

    def _on_inference_thread(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """`work` on one of the inference threads, with this task's context (the request id)."""
        call = functools.partial(contextvars.copy_context().run, work)
        return asyncio.get_running_loop().run_in_executor(self._threads, call)

    def close(self) -> None:
        """Stop taking work; inferences already running finish in their threads."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _release(self, job: asyncio.Future[Any]) -> None:
        self._slots.release()
        self.admitted -= 1
        if not job.cancelled():
            job.exception()  # retrieved, so an abandoned job's error is not reported as never retrieved
