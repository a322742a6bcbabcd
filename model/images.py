"""The one place that turns bytes or files into RGB images.

EXIF orientation is applied, every mode (greyscale, palette, RGBA, CMYK, 16-bit) becomes 8-bit RGB,
animated images give their first frame, and the pixel limit is checked from the header before any
pixel is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model.errors import ImageTooLarge, InvalidImage, UnsupportedFormat

DEFAULT_MAX_PIXELS = 40_000_000

# Formats a camera, phone or scanner produces and Pillow decodes faithfully. MPO is what many
# phones write for JPEG.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})

# Recognisable containers that are not (or not decodable) images here: answered as
# unsupported_format rather than invalid_image, so a client knows to convert rather than retry.
_KNOWN_UNSUPPORTED_MAGIC = {
    b"%PDF": "PDF",
    b"\x00\x00\x00\x1cftypheic": "HEIC",
}


def _sniff_unsupported(data: bytes) -> str | None:
    for magic, name in _KNOWN_UNSUPPORTED_MAGIC.items():
        if data.startswith(magic):
            return name
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"avif", b"avis"):
        return data[8:12].decode()
    return None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; alpha is composited over white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow's convert() clips 16-bit and float values at 255; rescale to the full range instead.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: frozenset[str] | None = SUPPORTED_FORMATS,
) -> Image.Image:
    """Decode an uploaded image to an upright 8-bit RGB Pillow image.

    Raises InvalidImage (not an image, truncated), UnsupportedFormat (a container outside `formats`;
    None accepts whatever Pillow reads) or ImageTooLarge (more than `max_pixels`, checked before
    decoding).
    """
    if not data:
        raise InvalidImage("the image is empty (zero bytes)")
    unsupported = _sniff_unsupported(data)
    if unsupported:
        raise UnsupportedFormat(
            f"{unsupported} is not supported; send JPEG, PNG, WebP, BMP, GIF or TIFF"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"the image has more than {max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise InvalidImage("the data is not a recognisable image") from None
    except Exception:  # Pillow plugins raise assorted errors on malformed headers
        raise InvalidImage("the image header is malformed") from None

    if formats is not None and image.format not in formats:
        raise UnsupportedFormat(
            f"{image.format} is not supported; send JPEG, PNG, WebP, BMP, GIF or TIFF"
        )
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage("the image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    try:
        image.seek(0)  # animated images: the first frame
        image.load()
        upright = ImageOps.exif_transpose(image)
        return _to_rgb(upright)
    except Exception:  # truncated or corrupt pixel data
        raise InvalidImage("the image data is truncated or corrupt") from None


def load_image(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, formats: frozenset[str] | None = SUPPORTED_FORMATS
) -> Image.Image:
    """Read an image file through the same path as uploads; datasets pass `formats=None` to accept
    their own formats (AT&T's PGM, for one)."""
    return decode_image(Path(path).read_bytes(), max_pixels=max_pixels, formats=formats)


def to_array(image: Image.Image) -> np.ndarray:
    """An RGB image as a writable, contiguous uint8 HxWx3 array (torch.from_numpy needs writable)."""
    return np.array(image, dtype=np.uint8)
