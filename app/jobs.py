"""The work a request hands to the inference thread: decode the uploads, then verify or embed them.

The decision (threshold or operating point) and any embedding given back are resolved by the route
before anything is queued, and handed in here, so no request resolves them twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from app.schemas.requests import VerifyUploads
from app.settings import Settings
from model.errors import InputError
from model.images import Photo, decode_photo
from model.verify.decision import Decision
from model.verify.results import FaceEmbedding, Verification
from model.verify.verifier import Verifier


def _decode_all(
    uploads: Sequence[tuple[str, bytes]], max_pixels: int, detection_side: int | None
) -> tuple[list[Photo], float]:
    """Decode every upload as finely as detection needs; errors name the field, since a request
    carries several images."""
    started = time.perf_counter()
    photos = []
    for label, data in uploads:
        try:
            photos.append(decode_photo(data, max_pixels, detection_side))
        except InputError as error:
            raise error.about(label) from None
    return photos, round((time.perf_counter() - started) * 1000, 2)


def given_embeddings(verifier: Verifier, uploads: VerifyUploads) -> list[FaceEmbedding | None]:
    """The embeddings a /verify gives in place of an image, each checked against the model serving;
    None for a side that is an image."""
    return [
        None if side.embedding is None
        else verifier.accept_embedding(side.embedding.embedding, side.embedding.model.to_model(), side.label)
        for side in (uploads.first, uploads.second)
    ]


def verify_uploads(
    verifier: Verifier,
    uploads: VerifyUploads,
    given: Sequence[FaceEmbedding | None],
    decision: Decision,
    settings: Settings,
) -> tuple[Verification, float]:
    """Decode the images and verify the two sides; returns the Verification and the decode time (ms)."""
    sides = (uploads.first, uploads.second)
    images = [(side.label, side.image) for side in sides if side.image is not None]
    photos, decode_ms = _decode_all(images, settings.max_image_pixels, verifier.detection_side)
    decoded = iter(photos)
    first, second = (embedding if embedding is not None else next(decoded) for embedding in given)
    result = verifier.verify(first, second, decision, policy=uploads.options.face_policy,
                             labels=(sides[0].label, sides[1].label), max_faces=settings.max_faces,
                             min_quality=quality_floor(verifier, uploads.options.min_quality, settings.min_quality))
    return result, decode_ms


def quality_floor(verifier: Verifier, requested: float | str | None, configured: float | str | None) -> float | None:
    """The quality score a request's faces must reach: its own min_quality (refused where the encoder
    has no quality model), else the service's, where the encoder has one."""
    if requested is not None:
        return verifier.quality_floor(requested)
    return verifier.quality_floor(configured) if verifier.card.quality is not None else None


def embed_images(
    verifier: Verifier, images: Sequence[bytes], policy: str | None, max_pixels: int,
    labels: Sequence[str] | None = None, min_quality: float | None = None,
) -> tuple[list[FaceEmbedding], dict[str, float]]:
    """Decode and embed all images (in passes of two); returns the FaceEmbeddings and the stage
    timings. Errors name each image by `labels` (default images[0], images[1], ...)."""
    labels = labels or [f"images[{index}]" for index in range(len(images))]
    photos, decode_ms = _decode_all(list(zip(labels, images)), max_pixels, verifier.detection_side)
    faces, timings = verifier.embed(photos, policy=policy, labels=labels, min_quality=min_quality)
    return faces, {"decode": decode_ms, **timings}
