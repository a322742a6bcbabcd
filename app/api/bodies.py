"""Reading a /verify or /embed body, multipart files or JSON with base64 images, into validated uploads.

The bodies are read here rather than declared as FastAPI parameters: both forms end in the same
validated object, and size and format errors keep the service's own error codes. Uploads stay in
memory (the body limit bounds them); images are never written to disk.
"""

from __future__ import annotations

import base64
import binascii
import re
from contextlib import aclosing
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.errors import describe_validation_errors, invalid_request
from app.schemas.requests import EmbedJSON, EmbedOptions, EmbedUploads, VerifyJSON, VerifyOptions, VerifyUploads


def _validated(model: type[BaseModel], data: Any, *, from_json: bool) -> Any:
    try:
        return model.model_validate_json(data) if from_json else model.model_validate(data)
    except ValidationError as error:
        raise invalid_request(describe_validation_errors(error.errors())) from None


_DATA_URL_PREFIX = re.compile(r"data:[^,;]*(;[^,;]*)*;base64,", re.IGNORECASE)


def decode_base64_image(text: str, field: str) -> bytes:
    """Standard or URL-safe base64, padded or not, line-wrapped or not, after an optional data: URL prefix."""
    prefix = _DATA_URL_PREFIX.match(text)
    compact = "".join(text[prefix.end() if prefix else 0 :].split())
    altchars = b"-_" if ("-" in compact or "_" in compact) else None
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request(f"{field} is not valid base64") from None


def _body_kind(request: Request) -> str:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        return "multipart"
    if media_type == "application/json" or media_type.endswith("+json"):
        return "json"
    raise invalid_request("send multipart/form-data (image files) or application/json (base64 images)")


async def _read_multipart(
    request: Request, max_files: int, max_body_bytes: int
) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """The file parts (name, bytes) in order, and the plain fields (each at most once)."""
    async with aclosing(request.stream()) as stream:
        parser = MultiPartParser(request.headers, stream, max_files=max_files, max_fields=8, max_part_size=4096)
        parser.spool_max_size = max_body_bytes  # never roll an upload over to a temporary file on disk
        try:
            form = await parser.parse()
        except MultiPartException as error:
            raise invalid_request(f"multipart body: {error.message}") from None
    files: list[tuple[str, bytes]] = []
    fields: dict[str, str] = {}
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((name, await value.read()))
            elif name in fields:
                raise invalid_request(f"field {name} is given twice")
            else:
                fields[name] = value
    finally:
        await form.close()
    return files, fields


def _file_fields_as_text(fields: dict[str, str], file_names: set[str]) -> None:
    """A plain form field where a file is expected: usually `curl -F name=<file` instead of `@file`."""
    misplaced = sorted(fields.keys() & file_names)
    if misplaced:
        name = misplaced[0]
        raise invalid_request(f"{name} must be a file part (e.g. curl -F {name}=@photo.jpg)")


async def read_verify_request(request: Request, max_body_bytes: int) -> VerifyUploads:
    """Two images (`image1`, `image2`) and the decision options, from multipart or JSON."""
    if _body_kind(request) == "json":
        body: VerifyJSON = _validated(VerifyJSON, await request.body(), from_json=True)
        return VerifyUploads(
            image1=decode_base64_image(body.image1, "image1"),
            image2=decode_base64_image(body.image2, "image2"),
            options=VerifyOptions.model_validate(body.model_dump(exclude={"image1", "image2"})),
        )
    files, fields = await _read_multipart(request, max_files=2, max_body_bytes=max_body_bytes)
    _file_fields_as_text(fields, {"image1", "image2"})
    images: dict[str, bytes] = {}
    for name, data in files:
        if name not in ("image1", "image2"):
            raise invalid_request(f"unexpected file field {name!r}; send image1 and image2")
        if name in images:
            raise invalid_request(f"{name} is given twice")
        images[name] = data
    for name in ("image1", "image2"):
        if name not in images:
            raise invalid_request(f"{name} is missing")
    return VerifyUploads(images["image1"], images["image2"], _validated(VerifyOptions, fields, from_json=False))


async def read_embed_request(request: Request, max_body_bytes: int, max_images: int) -> EmbedUploads:
    """One or more images (`images`, repeated) and the options, from multipart or JSON."""
    if _body_kind(request) == "json":
        body: EmbedJSON = _validated(EmbedJSON, await request.body(), from_json=True)
        if len(body.images) > max_images:
            raise invalid_request(f"{len(body.images)} images; at most {max_images} per request")
        images = [decode_base64_image(text, f"images[{index}]") for index, text in enumerate(body.images)]
        return EmbedUploads(images, EmbedOptions(face_policy=body.face_policy))
    files, fields = await _read_multipart(request, max_files=max_images, max_body_bytes=max_body_bytes)
    _file_fields_as_text(fields, {"images"})
    unexpected = sorted({name for name, _ in files} - {"images"})
    if unexpected:
        raise invalid_request(f"unexpected file field {unexpected[0]!r}; send the images as `images`")
    if not files:
        raise invalid_request("images is missing: send one or more files as `images`")
    return EmbedUploads([data for _, data in files], _validated(EmbedOptions, fields, from_json=False))


def request_body_docs(json_model: type[BaseModel], files: dict[str, str]) -> dict[str, Any]:
    """OpenAPI text for a body read by hand: the JSON form and the multipart form."""
    multipart_properties: dict[str, Any] = {
        name: {"type": "string", "format": "binary", "description": text} for name, text in files.items()
    }
    json_schema = json_model.model_json_schema()
    for name, schema in json_schema["properties"].items():
        if name not in files:
            multipart_properties[name] = schema
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": multipart_properties, "required": list(files)}
                },
                "application/json": {"schema": json_schema},
            },
        }
    }
