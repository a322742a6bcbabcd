"""Request and response shapes, and the functions that read a request body into them.

/verify and /embed take either multipart files or JSON with base64 images, so their bodies are read
here rather than declared as FastAPI parameters: both forms end in the same validated object, and
size and format errors keep the service's own error codes. Uploads stay in memory (the body limit
bounds them); images are never written to disk.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.errors import describe_validation_errors, invalid_request
from app.settings import FacePolicy
from model.faces.types import LANDMARK_NAMES

# -- requests -----------------------------------------------------------------------------------


class VerifyOptions(BaseModel):
    """How /verify decides; the same fields in a multipart form or a JSON body."""

    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(
        None,
        ge=0,
        le=2,
        allow_inf_nan=False,
        description="same person when the distance is at or below this; instead of an operating point",
    )
    operating_point: str | None = Field(
        None, min_length=1, max_length=64, description="a calibrated operating point by name (see /info)"
    )
    face_policy: FacePolicy | None = Field(None, description="which face to use when an image has several")

    @model_validator(mode="after")
    def _one_threshold_source(self) -> VerifyOptions:
        if self.threshold is not None and self.operating_point is not None:
            raise ValueError("give threshold or operating_point, not both")
        return self


class VerifyJSON(VerifyOptions):
    image1: str = Field(description="base64 image (a data: URL prefix is accepted)")
    image2: str = Field(description="base64 image (a data: URL prefix is accepted)")


class EmbedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    face_policy: FacePolicy | None = Field(None, description="which face to use when an image has several")


class EmbedJSON(EmbedOptions):
    images: list[str] = Field(min_length=1, description="base64 images (data: URL prefixes are accepted)")


@dataclass(frozen=True)
class VerifyUploads:
    image1: bytes
    image2: bytes
    options: VerifyOptions


@dataclass(frozen=True)
class EmbedUploads:
    images: list[bytes]
    options: EmbedOptions


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


# -- responses ----------------------------------------------------------------------------------


class Box(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class Point(BaseModel):
    x: float
    y: float


class FaceSummary(BaseModel):
    """The face an answer is about, in the uploaded image's (upright) pixel coordinates."""

    box: Box
    landmarks: dict[str, Point] = Field(description="left/right as seen in the image")
    detection_score: float
    faces_detected: int = Field(description="faces found in the image; the policy chose this one")

    @classmethod
    def of(cls, chosen: Any) -> FaceSummary:
        """From a model.pipeline.FaceEmbedding."""
        face = chosen.face
        x1, y1, x2, y2 = (round(float(value), 2) for value in face.box)
        return cls(
            box=Box(x1=x1, y1=y1, x2=x2, y2=y2),
            landmarks={
                name: Point(x=round(float(x), 2), y=round(float(y), 2))
                for name, (x, y) in zip(LANDMARK_NAMES, face.landmarks)
            },
            detection_score=round(float(face.score), 4),
            faces_detected=int(chosen.faces_detected),
        )


class ModelRef(BaseModel):
    name: str
    version: str

    @classmethod
    def of(cls, card: Any) -> ModelRef:
        return cls(name=card.name, version=card.version)


class OperatingPointInfo(BaseModel):
    name: str
    threshold: float
    far: float = Field(description="false-accept rate measured on held-out identities")
    frr: float = Field(description="false-reject rate measured on held-out identities")
    description: str

    @classmethod
    def of(cls, point: Any) -> OperatingPointInfo:
        return cls(
            name=point.name, threshold=point.threshold, far=point.far, frr=point.frr, description=point.description
        )


class Timings(BaseModel):
    decode: float
    detect: float
    align: float
    embed: float
    total: float


class VerifyFaces(BaseModel):
    image1: FaceSummary
    image2: FaceSummary


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


class VerifyResponse(BaseModel):
    same: bool
    distance: float = Field(description="Euclidean distance between the L2-normalised embeddings (0..2)")
    threshold: float
    operating_point: OperatingPointInfo | None = Field(description="null when an explicit threshold was given")
    probability_same: float | None = Field(description="calibrated P(same person); null if not calibrated")
    faces: VerifyFaces
    model: ModelRef
    timings_ms: Timings
    request_id: str

    @classmethod
    def of(cls, result: Any, decode_ms: float, card: Any, state: Any) -> VerifyResponse:
        """From a model.pipeline.Verification and the request's state (id, arrival time)."""
        return cls(
            same=result.same,
            distance=round(result.distance, 6),
            threshold=result.threshold,
            operating_point=OperatingPointInfo.of(result.operating_point) if result.operating_point else None,
            probability_same=result.probability_same,
            faces=VerifyFaces(image1=FaceSummary.of(result.faces[0]), image2=FaceSummary.of(result.faces[1])),
            model=ModelRef.of(card),
            timings_ms=Timings(decode=decode_ms, **result.timings_ms, total=_elapsed_ms(state.started)),
            request_id=state.request_id,
        )


class Embedding(BaseModel):
    embedding: list[float] = Field(description="L2-normalised; compare with Euclidean distance")
    dim: int
    face: FaceSummary


class EmbedResponse(BaseModel):
    embeddings: list[Embedding] = Field(description="one per image, in request order")
    model: ModelRef
    timings_ms: Timings
    request_id: str

    @classmethod
    def of(cls, faces: list[Any], timings: dict[str, float], card: Any, state: Any) -> EmbedResponse:
        return cls(
            embeddings=[
                Embedding(embedding=chosen.embedding.tolist(), dim=len(chosen.embedding), face=FaceSummary.of(chosen))
                for chosen in faces
            ],
            model=ModelRef.of(card),
            timings_ms=Timings(**timings, total=_elapsed_ms(state.started)),
            request_id=state.request_id,
        )


class LiveResponse(BaseModel):
    status: Literal["live"] = "live"


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model: ModelRef


class ServiceInfo(BaseModel):
    """The settings that change answers, so a client can tell what a response was made with."""

    flip_tta: bool
    precision: str = Field(description="what the encoder computes in")
    detector: dict[str, Any] = Field(description="the face detector and its settings")
    face_policy: FacePolicy
    default_operating_point: str | None
    operating_points: list[OperatingPointInfo] = Field(description="those of the active inference mode")
    min_face_size: int
    max_upload_bytes: int
    max_image_pixels: int
    max_embed_images: int


class InfoResponse(BaseModel):
    model: dict[str, Any] = Field(description="the encoder card (model.json) as shipped")
    service: ServiceInfo

    @classmethod
    def of(cls, verifier: Any, settings: Any) -> InfoResponse:
        calibration = verifier.calibration
        return cls(
            model=verifier.card.data,
            service=ServiceInfo(
                flip_tta=verifier.flip_tta,
                precision=verifier.precision,
                detector=verifier.detector.settings,
                face_policy=verifier.face_policy,
                default_operating_point=calibration.default if calibration else None,
                operating_points=[OperatingPointInfo.of(p) for p in calibration.operating_points.values()]
                if calibration
                else [],
                min_face_size=settings.min_face_size,
                max_upload_bytes=settings.max_upload_bytes,
                max_image_pixels=settings.max_image_pixels,
                max_embed_images=settings.max_embed_images,
            ),
        )


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
