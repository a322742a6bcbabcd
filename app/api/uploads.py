"""Reading a /verify, /embed, enrolment or subject-verification request, multipart files or JSON with base64 images, into validated uploads.

The bodies are read here rather than declared as FastAPI parameters: both forms end in the same
validated object, and size and format errors keep the service's own error codes. Uploads stay in
memory (the body limit bounds them); images are never written to disk.

Where things go: images and embeddings in the body; options (threshold, operating_point,
face_policy) in the body, as form or JSON fields, or in the query string. The same option in both
with the same value is accepted, with different values refused, as is an unknown field or query
parameter and a field given twice: no input is silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from contextlib import aclosing
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.errors import ServiceError, describe_validation_errors, invalid_request
from app.schemas.galleries import (
    EnrolJSON,
    EnrolOptions,
    EnrolUploads,
    ProbeUploads,
    SubjectVerifyJSON,
    SubjectVerifyOptions,
)
from app.schemas.grouping import GroupJSON, GroupOptions, GroupUploads
from app.schemas.requests import (
    EmbeddingInput,
    EmbedJSON,
    EmbedOptions,
    EmbedUploads,
    VerifyJSON,
    VerifyOptions,
    VerifySide,
    VerifyUploads,
)

BODY_FIELDS = frozenset({"image1", "image2", "embedding1", "embedding2", "images", "image", "embedding", "embeddings"})
# A plain multipart field's largest size: an embedding as JSON text (256 values take about 6 KB).
MAX_FIELD_BYTES = 128 * 1024


def _validated(model: type[BaseModel], data: Any, *, from_json: bool, where: str | None = None,
               code: str | None = None) -> Any:
    """`data` validated as `model`; errors are invalid_request, or invalid_embedding where they are
    all about an embedding, prefixed with `where` they were found."""
    try:
        return model.model_validate_json(data) if from_json else model.model_validate(data)
    except ValidationError as error:
        errors = error.errors()
        if code is None:
            about_embeddings = errors and all(str((e.get("loc") or ("",))[0]).startswith("embedding") for e in errors)
            code = "invalid_embedding" if about_embeddings else "invalid_request"
        message = describe_validation_errors(errors)
        raise ServiceError(code, f"{where}: {message}" if where else message) from None


def _query_options(request: Request, model: type[BaseModel]) -> dict[str, str]:
    """The query string's options; anything else in it is refused."""
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in BODY_FIELDS:
            raise invalid_request(f"{name} belongs in the request body, not in the query string")
        if name not in model.model_fields:
            raise invalid_request(f"unknown query parameter {name!r}; options: {', '.join(model.model_fields)}")
        if name in values and values[name] != value:
            raise invalid_request(f"query parameter {name} is given twice, with different values")
        values[name] = value
    return values


def _options(model: type[BaseModel], request: Request, body: dict[str, Any]) -> Any:
    """The options from the body and the query string together (see the module's docstring)."""
    from_query = _validated(model, _query_options(request, model), from_json=False, where="query string")
    from_body = _validated(model, body, from_json=False)
    for name in sorted(from_query.model_fields_set & from_body.model_fields_set):
        if getattr(from_query, name) != getattr(from_body, name):
            raise invalid_request(f"{name} is given in the query string and in the body, with different values")
    merged = {**from_body.model_dump(exclude_unset=True), **from_query.model_dump(exclude_unset=True)}
    return _validated(model, merged, from_json=False)


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
        parser = MultiPartParser(request.headers, stream, max_files=max_files, max_fields=8,
                                 max_part_size=MAX_FIELD_BYTES)
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


def _verify_sides(images: dict[str, bytes], embeddings: dict[str, EmbeddingInput]) -> tuple[VerifySide, VerifySide]:
    sides = []
    for number in ("1", "2"):
        image, embedding = images.get("image" + number), embeddings.get("embedding" + number)
        if image is not None and embedding is not None:
            raise invalid_request(f"give image{number} or embedding{number}, not both")
        if image is None and embedding is None:
            raise invalid_request(f"image{number} is missing (or embedding{number} in its place)")
        label = f"image{number}" if image is not None else f"embedding{number}"
        sides.append(VerifySide(label, image=image, embedding=embedding))
    return sides[0], sides[1]


def _embedding_text(name: str, text: str | bytes) -> EmbeddingInput:
    return _validated(EmbeddingInput, text, from_json=True, where=name, code="invalid_embedding")


async def read_verify_request(request: Request, max_body_bytes: int) -> VerifyUploads:
    """Two sides, each an image (`image1`, `image2`) or an embedding from /embed (`embedding1`,
    `embedding2`), and the decision options, from multipart or JSON."""
    if _body_kind(request) == "json":
        body: VerifyJSON = _validated(VerifyJSON, await request.body(), from_json=True)
        images = {name: decode_base64_image(text, name) for name in ("image1", "image2")
                  if (text := getattr(body, name)) is not None}
        embeddings = {name: value for name in ("embedding1", "embedding2") if (value := getattr(body, name)) is not None}
        options = body.model_dump(include=set(VerifyOptions.model_fields), exclude_unset=True)
    else:
        files, fields = await _read_multipart(request, max_files=4, max_body_bytes=max_body_bytes)
        _file_fields_as_text(fields, {"image1", "image2"})
        images, embeddings = {}, {}
        parts = [(name, data) for name, data in files] + [(name, fields.pop(name)) for name in ("embedding1", "embedding2")
                                                          if name in fields]
        for name, data in parts:
            if name in images or name in embeddings:
                raise invalid_request(f"{name} is given twice")
            if name in ("image1", "image2"):
                images[name] = data
            elif name in ("embedding1", "embedding2"):
                embeddings[name] = _embedding_text(name, data)
            else:
                raise invalid_request(f"unexpected file field {name!r}; send image1 and image2 (or embedding1, embedding2)")
        options = fields
    first, second = _verify_sides(images, embeddings)
    return VerifyUploads(first, second, _options(VerifyOptions, request, options))


async def read_embed_request(request: Request, max_body_bytes: int, max_images: int) -> EmbedUploads:
    """One or more images (`images`, repeated) and the options, from multipart or JSON."""
    if _body_kind(request) == "json":
        body: EmbedJSON = _validated(EmbedJSON, await request.body(), from_json=True)
        if len(body.images) > max_images:
            raise invalid_request(f"{len(body.images)} images; at most {max_images} per request")
        images = [decode_base64_image(text, f"images[{index}]") for index, text in enumerate(body.images)]
        options = body.model_dump(include=set(EmbedOptions.model_fields), exclude_unset=True)
        return EmbedUploads(images, _options(EmbedOptions, request, options))
    files, fields = await _read_multipart(request, max_files=max_images, max_body_bytes=max_body_bytes)
    _file_fields_as_text(fields, {"images"})
    unexpected = sorted({name for name, _ in files} - {"images"})
    if unexpected:
        raise invalid_request(f"unexpected file field {unexpected[0]!r}; send the images as `images`")
    if not files:
        raise invalid_request("images is missing: send one or more files as `images`")
    return EmbedUploads([data for _, data in files], _options(EmbedOptions, request, fields))


def _embedding_list(text: str | bytes) -> list[EmbeddingInput]:
    """A multipart `embeddings` field: a JSON list of embedding objects from /embed (or one object)."""
    try:
        values = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ServiceError("invalid_embedding", "embeddings is not JSON: send the list of embedding objects /embed "
                           "returned") from None
    values = values if isinstance(values, list) else [values]
    return [_validated(EmbeddingInput, value, from_json=False, where=f"embeddings[{index}]", code="invalid_embedding")
            for index, value in enumerate(values)]


async def _images_and_embeddings(
    request: Request, max_body_bytes: int, max_files: int, json_model: type[BaseModel], options_model: type[BaseModel]
) -> tuple[list[bytes], list[EmbeddingInput], Any]:
    """Images (`images`, repeated) and/or embeddings from /embed (`embeddings`: a JSON list; in
    multipart one text field or file part), and the options."""
    if _body_kind(request) == "json":
        body = _validated(json_model, await request.body(), from_json=True)
        images = [decode_base64_image(text, f"images[{index}]") for index, text in enumerate(body.images)]
        embeddings = body.embeddings
        options = body.model_dump(include=set(options_model.model_fields), exclude_unset=True)
    else:
        files, fields = await _read_multipart(request, max_files=max_files, max_body_bytes=max_body_bytes)
        _file_fields_as_text(fields, {"images"})
        unexpected = sorted({name for name, _ in files} - {"images", "embeddings"})
        if unexpected:
            raise invalid_request(f"unexpected file field {unexpected[0]!r}; send images (and/or embeddings)")
        images = [data for name, data in files if name == "images"]
        texts = [data for name, data in files if name == "embeddings"] + ([fields.pop("embeddings")]
                                                                          if "embeddings" in fields else [])
        if len(texts) > 1:
            raise invalid_request("embeddings is given twice; send one JSON list")
        embeddings = _embedding_list(texts[0]) if texts else []
        options = fields
    return images, embeddings, _options(options_model, request, options)


async def read_enrol_request(request: Request, max_body_bytes: int, max_images: int) -> EnrolUploads:
    """The faces to enrol (images and/or embeddings) and the enrolment options."""
    images, embeddings, options = await _images_and_embeddings(request, max_body_bytes, max_images + 1, EnrolJSON,
                                                               EnrolOptions)
    if not images and not embeddings:
        raise invalid_request("send one or more images (or embeddings from /embed) to enrol")
    if len(images) + len(embeddings) > max_images:
        raise invalid_request(f"{len(images) + len(embeddings)} faces; at most {max_images} per request")
    return EnrolUploads(images, embeddings, options)


async def read_group_request(request: Request, max_body_bytes: int, max_images: int) -> GroupUploads:
    """The batch to group (images, every face of each, and/or embeddings) and the options; the
    number of faces is checked by the service, once the images' faces are found."""
    images, embeddings, options = await _images_and_embeddings(request, max_body_bytes, max_images + 1, GroupJSON,
                                                               GroupOptions)
    if len(images) > max_images:
        raise invalid_request(f"{len(images)} images; at most {max_images} per request (send embeddings from /embed "
                              "for larger batches)")
    return GroupUploads(images, embeddings, options)


async def read_probe_request(
    request: Request, max_body_bytes: int, json_model: type[BaseModel] = SubjectVerifyJSON,
    options_model: type[BaseModel] = SubjectVerifyOptions,
) -> ProbeUploads:
    """One probe, an `image` or an `embedding` from /embed, and the options (a subject
    verification's, or a search's)."""
    if _body_kind(request) == "json":
        body = _validated(json_model, await request.body(), from_json=True)
        image = decode_base64_image(body.image, "image") if body.image is not None else None
        embedding = body.embedding
        options = body.model_dump(include=set(options_model.model_fields), exclude_unset=True)
    else:
        files, fields = await _read_multipart(request, max_files=2, max_body_bytes=max_body_bytes)
        _file_fields_as_text(fields, {"image"})
        image, embedding = None, None
        parts = files + ([("embedding", fields.pop("embedding"))] if "embedding" in fields else [])
        for name, data in parts:
            if name == "image" and image is None:
                image = data
            elif name == "embedding" and embedding is None:
                embedding = _embedding_text(name, data)
            elif name in ("image", "embedding"):
                raise invalid_request(f"{name} is given twice")
            else:
                raise invalid_request(f"unexpected file field {name!r}; send image (or embedding)")
        options = fields
    if (image is None) == (embedding is None):
        raise invalid_request("send image or embedding (one of them)")
    probe = VerifySide("image" if image is not None else "embedding", image=image, embedding=embedding)
    return ProbeUploads(probe, _options(options_model, request, options))


def _inlined(schema: Any, definitions: dict[str, Any]) -> Any:
    """A JSON schema with its local `$defs` references replaced by what they name (none is recursive):
    an operation's OpenAPI text cannot carry `$defs` of its own."""
    if isinstance(schema, dict):
        if set(schema) == {"$ref"}:
            return _inlined(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
        return {key: _inlined(value, definitions) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [_inlined(item, definitions) for item in schema]
    return schema


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return _inlined(schema, schema.get("$defs", {}))


def request_docs(
    json_model: type[BaseModel], options: type[BaseModel], files: dict[str, str], texts: dict[str, str] | None = None
) -> dict[str, Any]:
    """OpenAPI text for a request read by hand: the options in the query string, and the body as
    JSON or as multipart (`files` as file parts, `texts` as JSON text fields or file parts, and the
    options as form fields)."""
    multipart: dict[str, Any] = {name: {"type": "string", "format": "binary", "description": text}
                                 for name, text in files.items()}
    multipart |= {name: {"type": "string", "description": text} for name, text in (texts or {}).items()}
    option_properties = _schema(options)["properties"]
    multipart |= option_properties
    both = "; in the query string or the body (the same value in both is fine, different values are refused)"
    parameters = [
        {"name": name, "in": "query", "required": False, "schema": schema,
         "description": schema.get("description", "") + both}
        for name, schema in option_properties.items()
    ]
    return {
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": multipart,
                                                   "additionalProperties": False}},
                "application/json": {"schema": _schema(json_model)},
            },
        },
    }


def probe_docs(json_model: type[BaseModel], options: type[BaseModel]) -> dict[str, Any]:
    """request_docs for a request read by read_probe_request: one probe, an image or an embedding."""
    return request_docs(json_model, options, {"image": "the probe image"},
                        {"embedding": "in place of image: an embedding object from /embed, as JSON text"})
