"""Log records carry the request id; request bodies (images) are never logged."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
LOGGER_NAME = "facever"

# Context variables follow a request into asyncio.to_thread, so inference logs carry the id too.
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

# A client's id is echoed into headers and logs, so only short ids of safe characters are kept.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def accept_or_make_request_id(client_id: str | None) -> str:
    """The client's X-Request-ID when it is sane, else a fresh one."""
    if client_id and _SANE_REQUEST_ID.fullmatch(client_id):
        return client_id
    return uuid.uuid4().hex


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def _make_handler() -> logging.StreamHandler:
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    return handler


log_handler = _make_handler()


def configure_logging(level: str) -> None:
    """Attach the service's handler once (apps may be created many times, e.g. in tests)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    if log_handler not in logger.handlers:
        logger.addHandler(log_handler)
    logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}")
