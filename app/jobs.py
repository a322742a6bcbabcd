"""The work a request hands to the inference thread: decode the uploads, then verify or embed.

The decision (threshold or operating point) is resolved by the route before anything is queued,
and handed in here, so no request resolves it twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from PIL import Image

from app.schemas.requests import EmbedUploads, VerifyUploads
from model.errors import InputError
from model.images import decode_image
from model.verify.decision import Decision
from model.verify.results import FaceEmbedding, Verification


class Verifier(Protocol):
    """What the service needs of model.verify.pipeline.FaceVerifier (tests plug in fakes)."""

    card: Any
    calibration: Any
    flip_tta: bool
    precision: str
    engine: str
    detector: Any  # has .settings
    face_policy: str

    def decision(self, threshold: float | None = None, operating_point: str | None = None) -> Decision: ...

    def verify(
        self, image1: Image.Image, image2: Image.Image, decision: Decision, *, policy: str | None = None,
        labels: Sequence[str] = ("image1", "image2"),
    ) -> Verification: ...

    def embed(
        self, images: Sequence[Image.Image], policy: str | None = None, labels: Sequence[str] | None = None
    ) -> tuple[list[FaceEmbedding], dict[str, float]]: ...

    def warm_up(self) -> None: ...


def _decode_all(uploads: Sequence[tuple[str, bytes]], max_pixels: int) -> tuple[list[Image.Image], float]:
    """Decode every upload; errors name the field, since a request carries several images."""
    started = time.perf_counter()
    images = []
    for label, data in uploads:
        try:
            images.append(decode_image(data, max_pixels))
        except InputError as error:
            raise error.about(label) from None
    return images, round((time.perf_counter() - started) * 1000, 2)


def verify_uploads(
    verifier: Verifier, uploads: VerifyUploads, decision: Decision, max_pixels: int
) -> tuple[Verification, float]:
    """Decode both images and verify them; returns the Verification and the decode time (ms)."""
    (image1, image2), decode_ms = _decode_all([("image1", uploads.image1), ("image2", uploads.image2)], max_pixels)
    result = verifier.verify(image1, image2, decision, policy=uploads.options.face_policy, labels=("image1", "image2"))
    return result, decode_ms


def embed_uploads(
    verifier: Verifier, uploads: EmbedUploads, max_pixels: int
) -> tuple[list[FaceEmbedding], dict[str, float]]:
    """Decode and embed all images in one batch; returns the FaceEmbeddings and the stage timings."""
    labels = [f"images[{index}]" for index in range(len(uploads.images))]
    images, decode_ms = _decode_all(list(zip(labels, uploads.images)), max_pixels)
    faces, timings = verifier.embed(images, policy=uploads.options.face_policy, labels=labels)
    return faces, {"decode": decode_ms, **timings}
