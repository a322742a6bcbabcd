"""The work a request hands to the inference thread: decode its uploads, then verify or embed them.

Everything a request decides (the decision, the face policy, the quality floor, any embedding it
gives back) is resolved by its service before anything is queued and handed in here, so a bad
option costs no decoding and no job resolves anything twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from model.errors import InputError
from model.images import Photo, decode_photo
from model.verify.decision import Decision
from model.verify.results import FaceEmbedding, Verification
from model.verify.verifier import Verifier


@dataclass(frozen=True)
class FaceOptions:
    """Which face of an image a request means, and the quality it must reach (None: any)."""

    policy: str | None
    min_quality: float | None


@dataclass(frozen=True)
class Upload:
    """One side of a /verify or a probe: an image's bytes, or an embedding given back and already
    accepted (exactly one), named by the field it came in."""

    label: str
    image: bytes | None = None
    embedding: FaceEmbedding | None = None


def decode_all(
    uploads: Sequence[tuple[str, bytes]], max_pixels: int, detection_side: int | None
) -> tuple[list[Photo], float]:
    """Decode every upload as finely as detection needs, and the time it took (ms); errors name the
    field, since a request carries several images."""
    started = time.perf_counter()
    photos = []
    for label, data in uploads:
        try:
            photos.append(decode_photo(data, max_pixels, detection_side))
        except InputError as error:
            raise error.about(label) from None
    return photos, round((time.perf_counter() - started) * 1000, 2)


def verify_sides(
    verifier: Verifier, sides: tuple[Upload, Upload], decision: Decision, faces: FaceOptions, max_pixels: int,
    max_faces: int,
) -> tuple[Verification, float]:
    """Decode the images and verify the two sides; the Verification and the decode time (ms)."""
    images = [(side.label, side.image) for side in sides if side.image is not None]
    photos, decode_ms = decode_all(images, max_pixels, verifier.decode_side(verifier.needs_every_face(faces.policy)))
    decoded = iter(photos)
    first, second = (side.embedding if side.embedding is not None else next(decoded) for side in sides)
    result = verifier.verify(first, second, decision, policy=faces.policy, labels=(sides[0].label, sides[1].label),
                             max_faces=max_faces, min_quality=faces.min_quality)
    return result, decode_ms


def embed_images(
    verifier: Verifier, images: Sequence[bytes], faces: FaceOptions, max_pixels: int,
    labels: Sequence[str] | None = None,
) -> tuple[list[FaceEmbedding], dict[str, float]]:
    """Decode and embed all images (in passes of two); the FaceEmbeddings and the stage timings.
    Errors name each image by `labels` (default images[0], images[1], ...)."""
    labels = labels or [f"images[{index}]" for index in range(len(images))]
    photos, decode_ms = decode_all(list(zip(labels, images)), max_pixels,
                                   verifier.decode_side(verifier.needs_every_face(faces.policy)))
    embedded, timings = verifier.embed(photos, policy=faces.policy, labels=labels, min_quality=faces.min_quality)
    return embedded, {"decode": decode_ms, **timings}


def embed_every_face(
    verifier: Verifier, images: Sequence[bytes], max_pixels: int, max_faces: int
) -> tuple[list[list[FaceEmbedding]], dict[str, float]]:
    """Decode the images and embed every face of each (the `max_faces` largest); the faces of each
    image and the stage timings."""
    labels = [f"images[{index}]" for index in range(len(images))]
    photos, decode_ms = decode_all(list(zip(labels, images)), max_pixels, verifier.decode_side(every_face=True))
    faces, timings = verifier.embed_every_face(photos, max_faces)
    return faces, {"decode": decode_ms, **timings}
