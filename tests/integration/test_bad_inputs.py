"""A corpus of bad and odd inputs against the service on the shipped weights.

Every case expects its documented answer (README's error table, app.errors.STATUS_BY_CODE): a 4xx
with its code for what the service refuses, a 200 for odd-but-valid images it must convert. None
may cause a 5xx, and after the whole corpus the service must still be ready and verify a real pair.
All images are made here; the one real face is an LFW photo.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.errors import STATUS_BY_CODE
from tests.integration.real_service import real_service
from tests.metrics import samples
from tests.support.images import encode

pytestmark = [pytest.mark.anyio, pytest.mark.data]

MAX_UPLOAD_BYTES = 1024 * 1024  # small, so the oversize case stays cheap; every other case fits
MAX_EMBED_IMAGES = 4
FACE_PHOTO = "Aaron_Peirsol/Aaron_Peirsol_0001.jpg"
SAME_PERSON_PHOTO = "Aaron_Peirsol/Aaron_Peirsol_0002.jpg"


# -- images ---------------------------------------------------------------------------------------


def noise(width: int = 320, height: int = 240) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def gradient(width: int = 320, height: int = 240) -> Image.Image:
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    return Image.fromarray(np.stack([np.tile(ramp, (height, 1))] * 3, axis=-1))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 100_000) -> bytes:
    """A well-formed PNG header (valid CRCs) declaring side x side RGB pixels, with one tiny row."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def as_camera_stores(face: Image.Image, fmt: str, orientation: int) -> bytes:
    """The face as a phone stores it: the pixels turned, the EXIF orientation saying how to view them
    upright (HEIC's container rotation is written from it by pillow-heif)."""
    stored = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(face.transpose(stored[orientation]), fmt, quality=90, exif=exif.tobytes())


def heic_bomb(face: Image.Image, side: int = 10_000) -> bytes:
    """A real HEIC whose header (its 'ispe' property) declares side x side pixels: only the
    header says so, the coded image is the face's."""
    data = bytearray(encode(face, "HEIF", quality=50))
    at = data.index(b"ispe") + 8  # after the box's type and its version and flags
    data[at : at + 8] = struct.pack(">II", side, side)
    return bytes(data)


def sixteen_bit_png(face: Image.Image) -> bytes:
    grey = np.asarray(face.convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")  # a uint16 array becomes mode I;16


def rgba_png(face: Image.Image) -> bytes:
    """Opaque face, transparent border: the border becomes white."""
    alpha = Image.new("L", face.size, 0)
    alpha.paste(255, (20, 20, face.width - 20, face.height - 20))
    rgba = face.convert("RGBA")
    rgba.putalpha(alpha)
    return encode(rgba, "PNG")


def animated_gif(face: Image.Image) -> bytes:
    """The face first, then noise: the first frame is the one used."""
    return encode(face, "GIF", save_all=True, append_images=[noise(*face.size)], duration=100, loop=0)


def side_by_side(face: Image.Image) -> bytes:
    """Two copies of one face in one image."""
    canvas = Image.new("RGB", (face.width * 2, face.height), "white")
    canvas.paste(face, (0, 0))
    canvas.paste(face, (face.width, 0))
    return encode(canvas, "JPEG", quality=95)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- the corpus -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faces:
    """What a case may build its request from: the real photo, decoded and as its JPEG bytes."""

    image: Image.Image
    jpeg: bytes


Request = dict[str, Any]  # keyword arguments of httpx.AsyncClient.request


@dataclass(frozen=True)
class Case:
    name: str
    code: str | None  # None: a 200 answer; the status of a code comes from app.errors
    build: Callable[[Faces], Request]
    path: str = "/verify"
    method: str = "POST"

    @property
    def status(self) -> int:
        return STATUS_BY_CODE[self.code] if self.code else 200


def multipart(image1: bytes | None, image2: bytes | None, **fields: str) -> Request:
    files = {name: (f"{name}.img", data) for name, data in (("image1", image1), ("image2", image2)) if data is not None}
    return {"files": files, "data": fields}


async def chunked(*chunks: bytes) -> AsyncIterator[bytes]:
    """A body sent without Content-Length (chunked), so only the streaming limit can stop it."""
    for chunk in chunks:
        yield chunk


def raw(content: bytes | AsyncIterator[bytes], content_type: str | None) -> Request:
    return {"content": content, "headers": {"Content-Type": content_type} if content_type else {}}


def second_image(name: str, code: str | None, make: Callable[[Faces], bytes]) -> Case:
    """The real face as image1 and `make(faces)` as image2."""
    return Case(name, code, lambda faces: multipart(faces.jpeg, make(faces)))


def with_options(name: str, code: str | None, **fields: str) -> Case:
    return Case(name, code, lambda faces: multipart(faces.jpeg, faces.jpeg, **fields))


def with_json(name: str, code: str | None, make: Callable[[Faces], Any]) -> Case:
    return Case(name, code, lambda faces: {"json": make(faces)})


def pair_json(faces: Faces, **extra: Any) -> dict[str, Any]:
    return {"image1": b64(faces.jpeg), "image2": b64(faces.jpeg), **extra}


CASES = [
    # the body as a whole
    Case("empty body, no content type", "invalid_request", lambda faces: raw(b"", None)),
    Case("empty multipart body", "invalid_request", lambda faces: raw(b"", "multipart/form-data; boundary=x")),
    Case("multipart without boundary", "invalid_request", lambda faces: raw(b"--x\r\n", "multipart/form-data")),
    Case(
        "malformed multipart",
        "invalid_request",
        lambda faces: raw(b"--x\r\nnot a part header\r\n\r\n" + faces.jpeg, "multipart/form-data; boundary=x"),
    ),
    Case("empty JSON body", "invalid_request", lambda faces: raw(b"", "application/json")),
    Case("JSON syntax error", "invalid_request", lambda faces: raw(b'{"image1": ', "application/json")),
    Case("JSON array", "invalid_request", lambda faces: raw(b"[1, 2]", "application/json")),
    Case("text/plain body", "invalid_request", lambda faces: raw(faces.jpeg, "text/plain")),
    Case("image/jpeg body", "invalid_request", lambda faces: raw(faces.jpeg, "image/jpeg")),
    Case(
        "form-urlencoded body",
        "invalid_request",
        lambda faces: raw(b"image1=" + b64(faces.jpeg).encode(), "application/x-www-form-urlencoded"),
    ),
    Case(
        "oversize payload, declared length",
        "payload_too_large",
        lambda faces: multipart(faces.jpeg, b"\xff" * (MAX_UPLOAD_BYTES + 1)),
    ),
    Case(
        "oversize payload, streamed without length",
        "payload_too_large",
        lambda faces: raw(chunked(b"{" + b" " * MAX_UPLOAD_BYTES, b"}"), "application/json"),
    ),
    # fields
    Case("missing image2", "invalid_request", lambda faces: multipart(faces.jpeg, None)),
    Case("no images at all", "invalid_request", lambda faces: multipart(None, None, threshold="0.4")),
    Case(
        "wrong file field name",
        "invalid_request",
        lambda faces: {"files": {"image1": ("a.jpg", faces.jpeg), "photo2": ("b.jpg", faces.jpeg)}},
    ),
    Case(
        "image given as text field",
        "invalid_request",
        lambda faces: {"files": {"image1": ("a.jpg", faces.jpeg)}, "data": {"image2": b64(faces.jpeg)}},
    ),
    Case(
        "image1 given twice",
        "invalid_request",
        lambda faces: {"files": [("image1", ("a.jpg", faces.jpeg)), ("image1", ("b.jpg", faces.jpeg))]},
    ),
    with_options("unknown form field", "invalid_request", colour="blue"),
    with_json("JSON missing image2", "invalid_request", lambda faces: {"image1": b64(faces.jpeg)}),
    with_json(
        "JSON wrong field name", "invalid_request", lambda faces: {"image1": b64(faces.jpeg), "img2": b64(faces.jpeg)}
    ),
    with_json("JSON extra field", "invalid_request", lambda faces: pair_json(faces, debug=True)),
    with_json("JSON image as number", "invalid_request", lambda faces: {"image1": 1, "image2": b64(faces.jpeg)}),
    with_json(
        "wrong base64", "invalid_request", lambda faces: {"image1": "not base64 at all!", "image2": b64(faces.jpeg)}
    ),
    with_json(
        "base64 with a bad data: prefix",
        "invalid_request",
        lambda faces: {"image1": "data:image/jpeg;base64" + b64(faces.jpeg), "image2": b64(faces.jpeg)},
    ),
    # decision options
    with_options("negative threshold", "invalid_request", threshold="-0.1"),
    with_options("NaN threshold", "invalid_request", threshold="nan"),
    with_options("infinite threshold", "invalid_request", threshold="inf"),
    with_options("threshold above 2", "invalid_request", threshold="2.5"),
    with_options("threshold not a number", "invalid_request", threshold="close"),
    with_options("threshold and operating point", "invalid_request", threshold="0.4", operating_point="far_1e-3"),
    with_options("unknown operating point", "invalid_request", operating_point="far_1e-9"),
    with_options("overlong operating point", "invalid_request", operating_point="x" * 65),
    with_options("unknown face policy", "invalid_request", face_policy="smallest"),
    Case(
        "JSON NaN threshold",
        "invalid_request",
        lambda faces: raw(json.dumps(pair_json(faces, threshold=float("nan"))).encode(), "application/json"),
    ),
    with_json("JSON threshold as a list", "invalid_request", lambda faces: pair_json(faces, threshold=[0.4])),
    with_json(
        "JSON threshold and operating point",
        "invalid_request",
        lambda faces: pair_json(faces, threshold=0.4, operating_point="far_1e-3"),
    ),
    # image bytes
    second_image("empty file", "invalid_image", lambda faces: b""),
    second_image("text bytes", "invalid_image", lambda faces: b"hello, this is not an image\n" * 20),
    second_image("SVG", "invalid_image", lambda faces: b'<svg xmlns="http://www.w3.org/2000/svg"></svg>'),
    second_image("PDF", "unsupported_format", lambda faces: b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n"),
    second_image("HEIC pixel bomb", "image_too_large", lambda faces: heic_bomb(faces.image)),
    second_image("truncated HEIC", "invalid_image", lambda faces: encode(faces.image, "HEIF", quality=90)[:600]),
    second_image("PPM", "unsupported_format", lambda faces: encode(faces.image, "PPM")),
    second_image("truncated JPEG", "invalid_image", lambda faces: faces.jpeg[: len(faces.jpeg) // 2]),
    second_image("truncated PNG", "invalid_image", lambda faces: encode(faces.image, "PNG")[:4000]),
    second_image("PNG header only", "invalid_image", lambda faces: encode(faces.image, "PNG")[:33]),
    second_image("decompression bomb", "image_too_large", lambda faces: png_bomb()),
    second_image("12000x12000 image", "image_too_large", lambda faces: encode(Image.new("L", (12_000, 12_000)), "PNG")),
    second_image("1x1 image", "no_face_detected", lambda faces: encode(Image.new("RGB", (1, 1)), "PNG")),
    second_image("random noise", "no_face_detected", lambda faces: encode(noise(), "JPEG")),
    second_image("gradient", "no_face_detected", lambda faces: encode(gradient(), "PNG")),
    with_json(
        "base64 of text", "invalid_image", lambda faces: {"image1": b64(faces.jpeg), "image2": b64(b"hello world")}
    ),
    Case(
        "two faces, reject policy",
        "multiple_faces",
        lambda faces: multipart(faces.jpeg, side_by_side(faces.image), face_policy="reject"),
    ),
    # odd but valid images of the real face: converted and verified as the same person
    second_image("16-bit greyscale PNG", None, lambda faces: sixteen_bit_png(faces.image)),
    second_image("CMYK JPEG", None, lambda faces: encode(faces.image.convert("CMYK"), "JPEG", quality=95)),
    second_image("greyscale JPEG", None, lambda faces: encode(faces.image.convert("L"), "JPEG", quality=95)),
    second_image("animated GIF", None, lambda faces: animated_gif(faces.image)),
    second_image("palette PNG", None, lambda faces: encode(faces.image.quantize(256), "PNG")),
    second_image("RGBA PNG", None, lambda faces: rgba_png(faces.image)),
    second_image("WebP", None, lambda faces: encode(faces.image, "WEBP", quality=90)),
    second_image("BMP", None, lambda faces: encode(faces.image, "BMP")),
    second_image("TIFF", None, lambda faces: encode(faces.image, "TIFF")),
    second_image("HEIC from an iPhone held upright", None, lambda faces: as_camera_stores(faces.image, "HEIF", 6)),
    second_image("AVIF turned left", None, lambda faces: as_camera_stores(faces.image, "AVIF", 8)),
    second_image("JPEG upside down", None, lambda faces: as_camera_stores(faces.image, "JPEG", 3)),
    second_image("two faces, default policy", None, lambda faces: side_by_side(faces.image)),
    # other endpoints and methods
    Case(
        "embed: too many images",
        "invalid_request",
        lambda faces: {"files": [("images", (f"{i}.jpg", faces.jpeg)) for i in range(MAX_EMBED_IMAGES + 1)]},
        path="/embed",
    ),
    Case(
        "embed: too many JSON images",
        "invalid_request",
        lambda faces: {"json": {"images": [b64(faces.jpeg)] * (MAX_EMBED_IMAGES + 1)}},
        path="/embed",
    ),
    Case("embed: empty JSON list", "invalid_request", lambda faces: {"json": {"images": []}}, path="/embed"),
    Case("embed: no files", "invalid_request", lambda faces: {"data": {"face_policy": "largest"}}, path="/embed"),
    Case(
        "embed: one bad image among good ones",
        "invalid_image",
        lambda faces: {"files": [("images", ("a.jpg", faces.jpeg)), ("images", ("b.jpg", b"GIF89a"))]},
        path="/embed",
    ),
    Case("GET /verify", "method_not_allowed", lambda faces: {}, method="GET"),
    Case("unknown path", "not_found", lambda faces: multipart(faces.jpeg, faces.jpeg), path="/verify/v2"),
]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def faces(lfw_dir: Path) -> Faces:
    jpeg = (lfw_dir / "images" / FACE_PHOTO).read_bytes()
    return Faces(image=Image.open(io.BytesIO(jpeg)).convert("RGB"), jpeg=jpeg)


@pytest.fixture(scope="module")
async def service():
    async with real_service(max_upload_bytes=MAX_UPLOAD_BYTES, max_embed_images=MAX_EMBED_IMAGES) as running:
        yield running


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_documented_answer(service, faces, case):
    _, client = service
    response = await client.request(case.method, case.path, **case.build(faces))
    assert response.status_code < 500, response.text
    assert response.status_code == case.status, response.text
    if case.code is None:
        assert response.json()["same"] is True, response.json()["distance"]
    else:
        assert response.json()["error"]["code"] == case.code


async def test_still_ready_and_verifying_after_the_corpus(service, faces, lfw_dir):
    """Runs after the corpus (pytest keeps the file's order): nothing it sent left the service
    broken, and no request of the module was answered with a 5xx."""
    _, client = service
    assert (await client.get("/health/ready")).status_code == 200
    other = (lfw_dir / "images" / SAME_PERSON_PHOTO).read_bytes()
    response = await client.post("/verify", **multipart(faces.jpeg, other))
    assert response.status_code == 200, response.text
    assert response.json()["same"] is True
    metrics = (await client.get("/metrics")).text
    answered = {labels: value for (name, labels), value in samples(metrics).items() if name == "facever_http_requests_total"}
    assert answered and not [labels for labels in answered if dict(labels)["status"].startswith("5")], answered
