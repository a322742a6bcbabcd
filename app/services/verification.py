"""Verification and embedding: a request's options resolved once, its work run on the inference thread.

/verify and /embed end here, and so does the probe of a subject verification or a search: each
resolves its decision, face policy and quality floor, and accepts any embedding given back, before
anything is decoded or queued (app.services.inference), so a bad option costs no inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from app.limiter import InferenceLimiter
from app.metrics import ServiceMetrics
from app.schemas.galleries import ProbeUploads
from app.schemas.requests import EmbeddingInput, EmbedUploads, VerifySide, VerifyUploads
from app.services.inference import FaceOptions, Upload, embed_images, verify_sides
from app.settings import Settings
from model.verify.results import FaceEmbedding, Verification
from model.verify.verifier import Verifier

QualityFloor = float | str | None
# The stage timings of a request whose faces were all given as embeddings.
NO_TIMINGS = {"decode": 0.0, "detect": 0.0, "align": 0.0, "embed": 0.0, "quality": 0.0}


@dataclass(frozen=True)
class VerificationService:
    verifier: Verifier
    limiter: InferenceLimiter
    settings: Settings
    metrics: ServiceMetrics

    # -- options, resolved before queueing ----------------------------------------------------

    def face_options(self, policy: str | None, requested: QualityFloor, configured: QualityFloor) -> FaceOptions:
        """The face policy, and the quality score faces must reach: the request's own min_quality
        (refused where the encoder has no quality model), else the service's where it has one."""
        if requested is not None:
            return FaceOptions(policy, self.verifier.quality_floor(requested))
        floor = self.verifier.quality_floor(configured) if self.verifier.card.quality is not None else None
        return FaceOptions(policy, floor)

    def accept(self, given: EmbeddingInput, label: str) -> FaceEmbedding:
        """An embedding given back, checked against the model serving."""
        return self.verifier.accept_embedding(given.embedding, given.model.to_model(), label)

    def upload(self, side: VerifySide) -> Upload:
        """A side as the inference thread takes it: an image, or its embedding accepted."""
        if side.embedding is not None:
            return Upload(side.label, embedding=self.accept(side.embedding, side.label))
        return Upload(side.label, image=side.image)

    # -- the requests --------------------------------------------------------------------------

    async def verify(self, uploads: VerifyUploads) -> tuple[Verification, float]:
        """The two sides verified; the Verification and the decode time (ms)."""
        options = uploads.options
        decision = self.verifier.decision(options.threshold, options.operating_point)
        faces = self.face_options(options.face_policy, options.min_quality, self.settings.min_quality)
        sides = (self.upload(uploads.first), self.upload(uploads.second))
        result, decode_ms = await self.limiter.run("verify", partial(
            verify_sides, self.verifier, sides, decision, faces, self.settings.max_image_pixels,
            self.settings.max_faces))
        self.metrics.count_faces("verify", result.faces)
        return result, decode_ms

    async def embed(self, uploads: EmbedUploads) -> tuple[list[FaceEmbedding], dict[str, float]]:
        options = uploads.options
        faces = self.face_options(options.face_policy, options.min_quality, self.settings.min_quality)
        embedded, timings = await self.embed_images("embed", uploads.images, faces)
        self.metrics.count_faces("embed", embedded)
        return embedded, timings

    async def embed_images(self, operation: str, images: list[bytes], faces: FaceOptions,
                           labels: list[str] | None = None) -> tuple[list[FaceEmbedding], dict[str, float]]:
        """The chosen face of each image embedded on the inference thread, and the stage timings."""
        return await self.limiter.run(operation, partial(
            embed_images, self.verifier, images, faces, self.settings.max_image_pixels, labels))

    async def probe(self, uploads: ProbeUploads) -> tuple[FaceEmbedding, dict[str, float]]:
        """A subject verification's or a search's probe: the embedding given, accepted, or the face of
        its image, embedded under its face options."""
        probe = self.upload(uploads.probe)
        if probe.embedding is not None:  # no face to judge: its options are not asked about, as before
            return probe.embedding, dict(NO_TIMINGS)
        options = uploads.options
        faces = self.face_options(options.face_policy, options.min_quality, self.settings.min_quality)
        embedded, timings = await self.embed_images("verify", [probe.image], faces, [probe.label])
        return embedded[0], timings
