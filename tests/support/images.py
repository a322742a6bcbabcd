"""Images the tests make themselves (dataset photos are read from ../shared/data, never copied)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

RED, BLUE = (200, 30, 30), (30, 30, 200)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """The image as a file of format `fmt`, with the encoder's options (quality, exif, ...)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg(image: Image.Image, quality: int = 92, **options: Any) -> bytes:
    return encode(image, "JPEG", quality=quality, **options)


def image_bytes(color: tuple[int, int, int] = RED, size: tuple[int, int] = (100, 100), fmt: str = "JPEG") -> bytes:
    """A plain image of one colour."""
    return encode(Image.new("RGB", size, color), fmt)
