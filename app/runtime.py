"""How requests run: inference off the event loop with bounded concurrency and a deadline, the work
done in the inference thread, Prometheus metrics, and the per-request middleware.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import functools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from PIL import Image
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import RETRY_AFTER_S, ServiceError, error_response
from app.logging import REQUEST_ID_HEADER, accept_or_make_request_id, get_logger, request_id_var
from app.schemas import EmbedUploads, VerifyOptions, VerifyUploads
from model.errors import InputError
from model.images import decode_image

T = TypeVar("T")

logger = get_logger("http")


class Verifier(Protocol):
    """What the service needs of model.pipeline.FaceVerifier (tests plug in fakes)."""

    card: Any
    calibration: Any
    flip_tta: bool
    precision: str
    detector: Any  # has .settings
    face_policy: str

    def verify(self, image1: Image.Image, image2: Image.Image, **options: Any) -> Any: ...

    def embed(
        self, images: Sequence[Image.Image], policy: str | None = None, labels: Sequence[str] | None = None
    ) -> tuple[list[Any], dict[str, float]]: ...

    def warm_up(self) -> None: ...

    def resolve_threshold(self, threshold: float | None = None, operating_point: str | None = None) -> Any: ...


# -- metrics ------------------------------------------------------------------------------------

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _label_text(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs) + "}"


class Counter:
    """A Prometheus counter with labels. Thread-safe: inference threads update metrics too."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()):
        self.name, self.help_text, self.label_names = name, help_text, tuple(label_names)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(labels[name] for name in self.label_names)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def samples(self) -> list[str]:
        with self._lock:
            values = sorted(self._values.items())
        return [f"{self.name}{_label_text(list(zip(self.label_names, key)))} {value!r}" for key, value in values]


class Histogram:
    """A Prometheus histogram with labels and fixed buckets."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float], label_names: Sequence[str] = ()):
        self.name, self.help_text, self.label_names = name, help_text, tuple(label_names)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(labels[name] for name in self.label_names)
        with self._lock:
            # per-bucket counts (the last one is +Inf) and [sum]; made cumulative when rendered
            counts, total = self._series.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0]))
            counts[bisect.bisect_left(self.buckets, value)] += 1
            total[0] += value

    def samples(self) -> list[str]:
        with self._lock:
            series = sorted((key, list(counts), total[0]) for key, (counts, total) in self._series.items())
        lines = []
        for key, counts, total in series:
            labels = list(zip(self.label_names, key))
            cumulative = 0
            for bound, count in zip([*map(repr, self.buckets), "+Inf"], counts):
                cumulative += count
                lines.append(f"{self.name}_bucket{_label_text([*labels, ('le', bound)])} {cumulative}")
            lines.append(f"{self.name}_sum{_label_text(labels)} {total!r}")
            lines.append(f"{self.name}_count{_label_text(labels)} {cumulative}")
        return lines


class ServiceMetrics:
    """The service's metrics, rendered in the Prometheus text exposition format (version 0.0.4)."""

    def __init__(self) -> None:
        http_labels = ("route", "method", "status")
        self.requests = Counter("facever_http_requests_total", "HTTP requests answered.", http_labels)
        self.request_seconds = Histogram(
            "facever_http_request_duration_seconds",
            "Time from request arrival to the end of the response.",
            LATENCY_BUCKETS_S,
            http_labels,
        )
        self.inference_seconds = Histogram(
            "facever_inference_duration_seconds",
            "Time in the inference thread: decode, detect, align and embed.",
            LATENCY_BUCKETS_S,
            ("operation",),
        )
        self.faces_detected = Counter(
            "facever_faces_detected_total", "Faces the detector found in images it answered for.", ("operation",)
        )
        self.inference_rejected = Counter(
            "facever_inference_rejected_total",
            "Inferences refused because the service was full (overloaded) or past the deadline (timeout).",
            ("reason",),
        )

    def count_faces(self, operation: str, faces: Sequence[Any]) -> None:
        self.faces_detected.inc(sum(face.faces_detected for face in faces), operation=operation)

    def render(self) -> str:
        lines = []
        for metric in (
            self.requests,
            self.request_seconds,
            self.inference_seconds,
            self.faces_detected,
            self.inference_rejected,
        ):
            lines += [f"# HELP {metric.name} {metric.help_text}", f"# TYPE {metric.name} {metric.kind}"]
            lines += metric.samples()
        return "\n".join(lines) + "\n"


# -- bounded inference --------------------------------------------------------------------------


class InferenceLimiter:
    """At most `max_concurrency` inferences run at once and `max_queue` more may wait; anyone beyond
    that is refused at once with `overloaded`, so a burst cannot pile up unbounded memory and latency.

    The deadline covers waiting plus inference. A thread cannot be stopped, so an inference past its
    deadline keeps its slot until it really ends: the limit bounds the CPU work actually running,
    not only the requests still being waited on.
    """

    def __init__(self, max_concurrency: int, max_queue: int, timeout_s: float, metrics: ServiceMetrics):
        # Inference gets threads of its own, as many as may run at once: torch keeps a pool of
        # intra-op worker threads per calling thread, and asyncio's shared pool would rotate requests
        # over up to 32 callers, each with its own pool competing for the cores (see prepare()).
        self._threads = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="inference")
        self._slots = asyncio.Semaphore(max_concurrency)
        self._capacity = max_concurrency + max_queue
        self._timeout_s = timeout_s
        self._metrics = metrics
        self.admitted = 0  # waiting or running, including inferences whose request timed out

    async def run(self, operation: str, work: Callable[[], T]) -> T:
        if self.admitted >= self._capacity:
            self._metrics.inference_rejected.inc(reason="overloaded")
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
            self._metrics.inference_rejected.inc(reason="timeout")
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
            self._metrics.inference_seconds.observe(time.perf_counter() - started, operation=operation)

    async def prepare(self, work: Callable[[], T]) -> T:
        """Run set-up work (loading, warm-up) on the inference threads, outside the limits. torch's
        OpenMP keeps a team of worker threads per calling thread, and once the teams outnumber the
        cores every team waits passively: with 2 threads per inference, loading on another thread
        made each inference about half again slower."""
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


# -- the work done in the inference thread ------------------------------------------------------


def _decode_all(uploads: Sequence[tuple[str, bytes]], max_pixels: int) -> tuple[list[Image.Image], float]:
    """Decode every upload; errors name the field, since a request carries several images."""
    started = time.perf_counter()
    images = []
    for label, data in uploads:
        try:
            images.append(decode_image(data, max_pixels))
        except InputError as error:
            raise error.about(label) from None
    return images, round((time.perf_counter() - started) * 1000, 2)


def check_threshold_choice(verifier: Verifier, options: VerifyOptions) -> None:
    """Refuse before any decoding or queueing when no threshold can be chosen for this request (no
    calibration, an unknown operating point)."""
    verifier.resolve_threshold(options.threshold, options.operating_point)


def verify_uploads(verifier: Verifier, uploads: VerifyUploads, max_pixels: int) -> tuple[Any, float]:
    """Decode both images and verify them; returns the Verification and the decode time (ms)."""
    (image1, image2), decode_ms = _decode_all([("image1", uploads.image1), ("image2", uploads.image2)], max_pixels)
    options = uploads.options
    result = verifier.verify(
        image1,
        image2,
        threshold=options.threshold,
        operating_point=options.operating_point,
        policy=options.face_policy,
        labels=("image1", "image2"),
    )
    return result, decode_ms


def embed_uploads(
    verifier: Verifier, uploads: EmbedUploads, max_pixels: int
) -> tuple[list[Any], dict[str, float]]:
    """Decode and embed all images in one batch; returns the FaceEmbeddings and the stage timings."""
    labels = [f"images[{index}]" for index in range(len(uploads.images))]
    images, decode_ms = _decode_all(list(zip(labels, uploads.images)), max_pixels)
    faces, timings = verifier.embed(images, policy=uploads.options.face_policy, labels=labels)
    return faces, {"decode": decode_ms, **timings}


# -- per-request middleware ---------------------------------------------------------------------


class RequestMiddleware:
    """Per request: an id (logged, echoed in X-Request-ID), the body-size limit, metrics, one access
    log line, and a last-resort internal_error that never leaks details.

    Plain ASGI rather than BaseHTTPMiddleware so the body limit acts while the body streams in: a
    declared Content-Length over the limit is refused before reading, and a body without one is cut
    off as soon as it passes the limit, never buffered whole.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: ServiceMetrics):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = accept_or_make_request_id(headers.get(REQUEST_ID_HEADER))
        started = time.perf_counter()
        scope.setdefault("state", {}).update(request_id=request_id, started=started)
        token = request_id_var.set(request_id)
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                response_headers = MutableHeaders(scope=message)
                if REQUEST_ID_HEADER not in response_headers:
                    response_headers[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, self._limited(receive, headers.get("content-length", "")), send_with_id)
        except Exception:
            logger.exception("unhandled error")
            if response_started:
                raise
            await error_response("internal_error", "internal error")(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            labels = {
                "route": getattr(scope.get("route"), "path", "unmatched"),
                "method": scope["method"],
                "status": str(status),
            }
            self.metrics.requests.inc(**labels)
            self.metrics.request_seconds.observe(elapsed, **labels)
            logger.info("%s %s %d %.1f ms", scope["method"], scope["path"], status, elapsed * 1000)
            request_id_var.reset(token)

    def _limited(self, receive: Receive, declared_length: str) -> Receive:
        """A receive that refuses a declared length over the limit before reading anything, and an
        undeclared (chunked) body as soon as it passes the limit. Raised from the route, so the
        request is routed, authenticated and counted like any other."""
        limit = self.max_body_bytes
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            if declared_length.isdigit() and int(declared_length) > limit:
                raise ServiceError(
                    "payload_too_large", f"the request body is {declared_length} bytes; the limit is {limit} bytes"
                )
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ServiceError("payload_too_large", f"the request body is over the limit of {limit} bytes")
            return message

        return receive_within_limit
