"""The one place that turns bytes or files into RGB images.

EXIF orientation is applied, every mode (greyscale, palette, RGBA, CMYK, 16-bit) becomes 8-bit RGB,
animated images give their first frame, and the pixel limit is checked from the header before any
pixel is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from model.errors import ImageTooLarge, InvalidImage, UnsupportedFormat
from model.types import Face

DEFAULT_MAX_PIXELS = 40_000_000

# HEIC/HEIF, the iPhone camera's default, through pillow-heif (libheif, BSD-3/LGPL): it reads the
# size from the container's header, as Pillow does for the others, and applies the container's own
# rotation when it decodes. AVIF is Pillow's own (libavif).
pillow_heif.register_heif_opener()

# Formats a camera, phone or scanner produces and Pillow decodes faithfully. MPO is what many
# phones write for JPEG.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF", "HEIF", "AVIF"})

# Recognisable containers that are not images here: answered as unsupported_format rather than
# invalid_image, so a client knows to convert rather than retry.
_KNOWN_UNSUPPORTED_MAGIC = {b"%PDF": "PDF"}


def _sniff_unsupported(data: bytes) -> str | None:
    for magic, name in _KNOWN_UNSUPPORTED_MAGIC.items():
        if data.startswith(magic):
            return name
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


def _open(data: bytes, max_pixels: int, formats: frozenset[str] | None) -> Image.Image:
    """The image's header, checked (format, size) before any pixel is decoded."""
    if not data:
        raise InvalidImage("the image is empty (zero bytes)")
    unsupported = _sniff_unsupported(data)
    if unsupported:
        raise UnsupportedFormat(f"{unsupported} is not supported")
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
        raise UnsupportedFormat(f"{image.format} is not supported")
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage("the image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    return image


def _upright_rgb(image: Image.Image) -> Image.Image:
    """Decode the pixels (the first frame of an animation), apply the EXIF orientation, make RGB."""
    try:
        image.seek(0)
        image.load()
        return _to_rgb(ImageOps.exif_transpose(image))
    except Exception:  # truncated or corrupt pixel data
        raise InvalidImage("the image data is truncated or corrupt") from None


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
    return _upright_rgb(_open(data, max_pixels, formats))


# libjpeg decodes a JPEG at 1/1, 1/2, 1/4 or 1/8 of its size in the DCT itself, in a fraction of
# the time and memory of a full decode (Pillow's Image.draft).
JPEG_REDUCTIONS = (8, 4, 2, 1)
# EXIF orientation -> the transposition that makes the stored pixels upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _scaled_face(face: Face, factor: float, offset: tuple[float, float] = (0.0, 0.0)) -> Face:
    """`face` in pixels `factor` times finer, shifted by -offset; pixel centres as in model/faces/align.py."""
    def point(x: float, y: float) -> tuple[float, float]:
        return ((x + 0.5) * factor - 0.5 - offset[0], (y + 0.5) * factor - 0.5 - offset[1])

    (x1, y1), (x2, y2) = point(*face.box[:2]), point(*face.box[2:])
    return Face(box=(x1, y1, x2, y2), score=face.score, landmarks=tuple(point(x, y) for x, y in face.landmarks))


def stored_region(box: tuple[int, int, int, int], orientation: int, stored_size: tuple[int, int]) -> tuple[int, ...]:
    """The region (x0, y0, x1, y1) of the stored pixels that `orientation`'s transposition turns into
    the upright region `box`; `stored_size` is the stored pixels' (width, height)."""
    x0, y0, x1, y1 = box
    width, height = stored_size
    return {
        1: (x0, y0, x1, y1),
        2: (width - x1, y0, width - x0, y1),
        3: (width - x1, height - y1, width - x0, height - y0),
        4: (x0, height - y1, x1, height - y0),
        5: (y0, x0, y1, x1),
        6: (y0, height - x1, y1, height - x0),
        7: (width - y1, height - x1, width - y0, height - x0),
        8: (width - y1, x0, width - y0, x1),
    }[orientation]


def _drafted(image: Image.Image, reduction: int) -> Image.Image:
    """A JPEG set to decode at 1/`reduction` (Pillow picks the largest reduction that keeps the
    size asked for, which is this one)."""
    width, height = image.size
    _, box = image.draft("RGB", (width // reduction, height // reduction))
    if round(width / box[2]) != reduction:  # box: the full size in the reduced pixels' units
        raise AssertionError(f"libjpeg chose another reduction than 1/{reduction}")
    return image


@dataclass(frozen=True)
class Photo:
    """An image as the pipeline reads it: `pixels`, upright 8-bit RGB, decoded at 1/`reduction` of
    the image's upright `size` (width, height). Faces are reported in the full image's pixels.

    A large JPEG is decoded only as finely as detection needs (decode_photo), and keeps its bytes
    so that a face too small there to align well is aligned from its region decoded again, as
    finely as it needs (`view`): the memory of a full decode is then spent on small faces only.
    """

    pixels: np.ndarray
    size: tuple[int, int]
    reduction: int = 1
    jpeg: bytes | None = None  # the source, where `pixels` is reduced
    orientation: int = 1  # its EXIF orientation

    @classmethod
    def of(cls, image: Image.Image | np.ndarray) -> Photo:
        """A decoded image, at full resolution."""
        pixels = to_array(image) if isinstance(image, Image.Image) else image
        return cls(pixels, (pixels.shape[1], pixels.shape[0]))

    def finer(self, side: int) -> Photo:
        """The photo decoded again as decode_photo decodes it for `side`, where its JPEG gives finer
        pixels than these (a detector's full look after its first found nothing); else itself."""
        if self.jpeg is None or _reduction(self.size, side) >= self.reduction:
            return self
        return decode_photo(self.jpeg, max_pixels=self.size[0] * self.size[1], detection_side=side)

    def face_in_full(self, face: Face) -> Face:
        """A face found in `pixels`, in the full image's pixels."""
        return face if self.reduction == 1 else _scaled_face(face, self.reduction)

    def view(self, face: Face, min_side: float) -> tuple[np.ndarray, Face]:
        """Pixels to align `face` (full-image coordinates) from, and the face in their coordinates:
        `pixels`, unless the face's box spans less than `min_side` there and the JPEG can give it
        finer; then the face's region (its box and as much again on every side) decoded at the
        coarsest reduction where the box spans `min_side`, or at full size."""
        side = max(face.width, face.height)
        if self.jpeg is None or side / self.reduction >= min_side:
            return self.pixels, _scaled_face(face, 1 / self.reduction)
        reduction = next(r for r in JPEG_REDUCTIONS if r < self.reduction and (side / r >= min_side or r == 1))
        scaled = _scaled_face(face, 1 / reduction)
        upright_width, upright_height = -(-self.size[0] // reduction), -(-self.size[1] // reduction)
        margin = max(scaled.width, scaled.height)
        x1, y1, x2, y2 = scaled.box
        region = (max(0, int(x1 - margin)), max(0, int(y1 - margin)),
                  min(upright_width, int(x2 + margin) + 2), min(upright_height, int(y2 + margin) + 2))
        image = _drafted(Image.open(io.BytesIO(self.jpeg)), reduction)
        image.load()
        crop = image.crop(stored_region(region, self.orientation, image.size))
        del image  # the finer decode, freed before the region is converted
        if self.orientation in _UPRIGHT:
            crop = crop.transpose(_UPRIGHT[self.orientation])
        return to_array(_to_rgb(crop)), _scaled_face(face, 1 / reduction, region[:2])


def _reduction(size: tuple[int, int], side: int) -> int:
    """The coarsest of JPEG_REDUCTIONS whose longer side keeps at least `side` pixels."""
    return next(r for r in JPEG_REDUCTIONS if -(-max(size) // r) >= side or r == 1)


def decode_photo(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, detection_side: int | None = None) -> Photo:
    """Decode an upload for the pipeline: a JPEG whose longer side exceeds `detection_side` at the
    coarsest reduction that keeps at least that (what detection looks at; it never sees more);
    anything else at full size. Errors as decode_image's."""
    image = _open(data, max_pixels, SUPPORTED_FORMATS)
    size = image.size
    reduction = 1
    if detection_side and image.format in ("JPEG", "MPO"):
        reduction = _reduction(size, detection_side)
        if reduction > 1:
            _drafted(image, reduction)
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1) if reduction > 1 else 1
    upright = _upright_rgb(image)
    if reduction == 1:
        return Photo.of(upright)
    full = size if orientation not in (5, 6, 7, 8) else size[::-1]
    return Photo(to_array(upright), full, reduction, data, orientation if orientation in _UPRIGHT else 1)


def load_image(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, formats: frozenset[str] | None = SUPPORTED_FORMATS
) -> Image.Image:
    """Read an image file through the same path as uploads; datasets pass `formats=None` to accept
    their own formats (AT&T's PGM, for one)."""
    return decode_image(Path(path).read_bytes(), max_pixels=max_pixels, formats=formats)


def to_array(image: Image.Image) -> np.ndarray:
    """An RGB image as a writable, contiguous uint8 HxWx3 array (torch.from_numpy needs writable)."""
    return np.array(image, dtype=np.uint8)
