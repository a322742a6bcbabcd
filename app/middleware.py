"""Per-request handling around every route: request id, streamed body limit, metrics, access log."""

from __future__ import annotations

import time

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ServiceError, error_response
from app.logging import REQUEST_ID_HEADER, accept_or_make_request_id, get_logger, request_id_var
from app.metrics import ServiceMetrics

logger = get_logger("http")


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
            self.metrics.requests.labels(**labels).inc()
            self.metrics.request_seconds.labels(**labels).observe(elapsed)
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
