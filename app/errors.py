"""Error codes, their HTTP statuses, and the handlers that give every error one shape:

    {"error": {"code": "...", "message": "..."}, "request_id": "..."}

Codes are stable (clients branch on them); messages are for people and may change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.logging import REQUEST_ID_HEADER, get_logger, request_id_var
from app.storage.base import StorageError, StorageUnavailable
from model.errors import (
    AllFacesNeedAnImage,
    ImageTooLarge,
    IncompatibleEmbedding,
    InputError,
    InvalidEmbedding,
    InvalidImage,
    LowQuality,
    MultipleFaces,
    NoFaceDetected,
    NoQualityModel,
    Uncalibrated,
    UnsupportedFormat,
)

logger = get_logger("app.errors")

STATUS_BY_CODE: dict[str, int] = {
    "invalid_image": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "gallery_not_found": 404,
    "subject_not_found": 404,
    "template_not_found": 404,
    "method_not_allowed": 405,
    "gallery_exists": 409,
    "subject_exists": 409,
    "subject_mismatch": 409,
    "duplicate_face": 409,
    "subject_full": 409,
    "subject_empty": 409,
    "reenrolment_needed": 409,
    "conflict": 409,
    "duplicate_identity": 409,
    "key_not_found": 404,
    "job_not_found": 404,
    "image_too_large": 413,
    "payload_too_large": 413,
    "unsupported_format": 415,
    "invalid_request": 422,
    "invalid_embedding": 422,
    "incompatible_embedding": 422,
    "no_face_detected": 422,
    "multiple_faces": 422,
    "low_quality": 422,
    "consent_required": 422,
    "empty_batch": 422,
    "too_many_faces": 422,
    "rate_limited": 429,
    "internal_error": 500,
    "template_corrupted": 500,
    "not_ready": 503,
    "overloaded": 503,
    "timeout": 503,
    "storage_unavailable": 503,
}

# Seconds a client should wait before retrying an overloaded service: about one inference.
RETRY_AFTER_S = 1
# ... and an unavailable database: the store is tried again every 2 s (app.storage.supervisor).
STORAGE_RETRY_AFTER_S = 2


# The model side's domain errors (model.errors) by kind: the code, and what the API adds to the
# reason to tell a client what to send instead. Any other kind is invalid_request.
CODE_BY_INPUT_ERROR: dict[type[InputError], str] = {
    InvalidImage: "invalid_image",
    UnsupportedFormat: "unsupported_format",
    ImageTooLarge: "image_too_large",
    NoFaceDetected: "no_face_detected",
    MultipleFaces: "multiple_faces",
    InvalidEmbedding: "invalid_embedding",
    IncompatibleEmbedding: "incompatible_embedding",
    LowQuality: "low_quality",
}
REMEDY_BY_INPUT_ERROR: dict[type[InputError], str] = {
    UnsupportedFormat: "; send JPEG, PNG, WebP, BMP, GIF or TIFF",
    MultipleFaces: "; send an image with exactly one face",
    Uncalibrated: "; give an explicit threshold",
    NoQualityModel: "; leave min_quality out",
    AllFacesNeedAnImage: ": send image1 or image2",
}


def input_error_code(error: InputError) -> str:
    return CODE_BY_INPUT_ERROR.get(type(error), "invalid_request")


def input_error_message(error: InputError) -> str:
    """The error's message (which input, and why) with the API's remedy, where it has one."""
    return error.message + REMEDY_BY_INPUT_ERROR.get(type(error), "")


class ServiceError(Exception):
    """An error the service itself raises (as opposed to the domain errors of model.errors)."""

    def __init__(self, code: str, message: str, headers: Mapping[str, str] | None = None,
                 details: Mapping[str, Any] | None = None):
        if code not in STATUS_BY_CODE:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = dict(details or {})  # what a client acts on beside the code (e.g. the matched subjects)


def invalid_request(message: str) -> ServiceError:
    return ServiceError("invalid_request", message)


def error_response(
    code: str, message: str, request_id: str | None = None, headers: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> JSONResponse:
    request_id = request_id or request_id_var.get()
    return JSONResponse(
        {"error": {"code": code, "message": message, **(details or {})}, "request_id": request_id},
        status_code=STATUS_BY_CODE.get(code, 422),
        headers={**(headers or {}), REQUEST_ID_HEADER: request_id},
    )


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """Where and what, without echoing the input (it may be a whole base64 image)."""
    parts = []
    for item in errors:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        if item.get("type") == "value_error":  # our own validators: their text, without pydantic's prefix
            message = str(item.get("ctx", {}).get("error", item.get("msg", "invalid")))
        elif item.get("type") == "extra_forbidden":
            message = "unknown field"
        else:
            message = item.get("msg", "invalid")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or "the request is invalid"


async def _service_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServiceError)
    return error_response(error.code, error.message, headers=error.headers, details=error.details)


async def _input_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, InputError)
    return error_response(input_error_code(error), input_error_message(error))


async def _storage_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StorageError)
    if isinstance(error, StorageUnavailable):
        logger.warning("storage unavailable: %s", error.message)
        return error_response("storage_unavailable", "the subject database is unavailable; retry shortly",
                              headers={"Retry-After": str(STORAGE_RETRY_AFTER_S)})
    return error_response(error.code, error.message)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return error_response("invalid_request", describe_validation_errors(error.errors()))


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    """Starlette's routing errors (unknown path, wrong method) in the service's shape."""
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 404:
        code, message = "not_found", f"no such endpoint: {request.url.path}"
    elif error.status_code == 405:
        code, message = "method_not_allowed", f"{request.method} is not allowed on {request.url.path}"
    elif error.status_code < 500:
        code, message = "invalid_request", str(error.detail)
    else:
        code, message = "internal_error", "internal error"
    return error_response(code, message, headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Unhandled exceptions are turned into internal_error by the request middleware (app.middleware)."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(StorageError, _storage_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
