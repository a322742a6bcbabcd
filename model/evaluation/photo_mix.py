"""Photos as users send them, made from LFW: what the benchmarks and the memory test send in place of
LFW's uniform 250x250 crops.

Each photo is one LFW image (or a collage of two to four, for group photos) set in a frame of a size
drawn from 200 px to 12 MP, in the aspect ratios of phones, webcams and door cameras (portrait and
landscape), on a smooth background made from the photo's own colours, encoded as JPEG at a quality
from 60 to 95 with an EXIF orientation (upright most often, as cameras write them; the stored pixels
are turned so that the orientation makes them upright). The LFW crop fills 50-100% of the frame's
shorter side, so its face about 20-45%. Seeded: the same seed gives the same photos, byte for byte, so a run can be repeated and two
servers can be sent the same stream.

`distinct_sizes` draws every photo at a frame size not drawn before, the worst case for anything that
caches per input shape.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# (width, height) ratios, landscape; each is also drawn turned to portrait.
ASPECT_RATIOS = (4 / 3, 16 / 9, 3 / 2, 1.0, 2.0)
MIN_MEGAPIXELS, MAX_MEGAPIXELS = 0.04, 12.0
# Size classes, by megapixels, that the benchmarks report apart (LFW's own crops are "lfw").
SIZE_CLASSES = (("small", 0.0, 0.3), ("webcam", 0.3, 1.0), ("1-3 MP", 1.0, 3.0), ("phone", 3.0, 13.0))
# EXIF orientation -> how often a camera writes it.
ORIENTATIONS = {1: 0.7, 6: 0.12, 8: 0.06, 3: 0.06, 2: 0.015, 4: 0.015, 5: 0.015, 7: 0.015}
# Stored pixels from upright ones: the inverse of what the orientation's viewer applies.
_STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
COLLAGE_SHARE = 0.1  # of the photos, group photos of 2-4 faces
EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class MixedPhoto:
    data: bytes  # the file as a user would upload it
    size: tuple[int, int]  # upright (width, height)
    faces: int  # LFW faces in it
    orientation: int
    quality: int
    sources: tuple[str, ...]  # LFW image names, relative to lfw/images

    @property
    def megapixels(self) -> float:
        return self.size[0] * self.size[1] / 1e6

    @property
    def size_class(self) -> str:
        return size_class(self.size)


def size_class(size: tuple[int, int]) -> str:
    megapixels = size[0] * size[1] / 1e6
    return next(name for name, low, high in SIZE_CLASSES if low <= megapixels < high)


def lfw_sources(lfw_images: Path, count: int | None = None) -> list[Path]:
    """LFW's images in a fixed order (by name), the first `count`."""
    return sorted(lfw_images.glob("*/*.jpg"))[:count]


def frame_size(rng: np.random.Generator) -> tuple[int, int]:
    """A frame drawn log-uniformly in megapixels over MIN..MAX_MEGAPIXELS, of a drawn aspect ratio."""
    megapixels = math.exp(rng.uniform(math.log(MIN_MEGAPIXELS), math.log(MAX_MEGAPIXELS)))
    ratio = float(rng.choice(ASPECT_RATIOS))
    if rng.random() < 0.5:
        ratio = 1 / ratio
    width = max(200, round(math.sqrt(megapixels * 1e6 * ratio)))
    height = max(200, round(width / ratio))
    return width, height


def background(source: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A smooth frame of `size` in `source`'s colours: no edge and no structure a detector could take
    for a face."""
    return source.resize((3, 3), Image.Resampling.BOX).resize(size, Image.Resampling.BICUBIC)


def compose(sources: Sequence[Image.Image], size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """The sources (RGB) side by side in an upright frame of `size`, each scaled so that it fills a
    drawn 50-100% of the frame's shorter side (a collage shares the frame's width), on the first
    source's background()."""
    width, height = size
    frame = background(sources[0], size)
    cell_width = width // len(sources)
    for index, source in enumerate(sources):
        side = max(16, min(round(min(width, height) * rng.uniform(0.5, 1.0)), cell_width, height))
        scaled = source.resize((side, side), Image.Resampling.BICUBIC)
        left = index * cell_width + int(rng.integers(0, cell_width - side + 1))
        top = int(rng.integers(0, height - side + 1))
        frame.paste(scaled, (left, top))
    return frame


def encode_photo(upright: Image.Image, orientation: int, quality: int) -> bytes:
    """`upright` as a camera stores it: pixels turned for `orientation`, the tag in EXIF, JPEG."""
    stored = upright.transpose(_STORED[orientation]) if orientation in _STORED else upright
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()


def photo_mix(
    lfw_images: Path, count: int, seed: int = 0, *, sizes: Sequence[tuple[int, int]] | None = None,
    distinct_sizes: bool = False, collages: bool = True,
) -> Iterator[MixedPhoto]:
    """`count` photos made from LFW, one at a time (12 MP frames are not all held at once). `sizes`:
    cycle through these frame sizes instead of drawing them (e.g. the benchmarks' fixed classes)."""
    rng = np.random.default_rng(seed)
    sources = lfw_sources(lfw_images)
    orientations, weights = list(ORIENTATIONS), np.array(list(ORIENTATIONS.values()))
    seen: set[tuple[int, int]] = set()
    for index in range(count):
        if sizes:
            size = tuple(sizes[index % len(sizes)])
        else:
            size = frame_size(rng)
            while distinct_sizes and size in seen:
                size = frame_size(rng)
            seen.add(size)
        faces = int(rng.integers(2, 5)) if collages and rng.random() < COLLAGE_SHARE else 1
        picked = [sources[int(i)] for i in rng.choice(len(sources), faces, replace=False)]
        orientation = int(rng.choice(orientations, p=weights / weights.sum()))
        quality = int(rng.integers(60, 96))
        images = [Image.open(path).convert("RGB") for path in picked]
        data = encode_photo(compose(images, size, rng), orientation, quality)
        yield MixedPhoto(data, size, faces, orientation, quality,
                         tuple(str(path.relative_to(lfw_images)) for path in picked))


def upscaled(path: Path, size: tuple[int, int], quality: int = 90) -> bytes:
    """An LFW image enlarged into a frame of `size` (its shorter side filled, centred, on its
    background()), as a JPEG: the pairs of LFW's protocol at a phone's or a webcam's size."""
    source = Image.open(path).convert("RGB")
    width, height = size
    side = min(width, height)
    frame = background(source, size)
    frame.paste(source.resize((side, side), Image.Resampling.BICUBIC), ((width - side) // 2, (height - side) // 2))
    buffer = io.BytesIO()
    frame.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
