"""POST /group: a batch of faces (every face of its images, and embeddings from /embed) grouped by
person under the card's calibrated rule and threshold (model.verify.grouping), or a request's own."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
from starlette.concurrency import run_in_threadpool

from app.errors import ServiceError
from app.schemas.grouping import GroupUploads
from app.services.inference import embed_every_face
from app.services.verification import NO_TIMINGS, VerificationService
from model.verify.grouping import GroupingRule, partition
from model.verify.results import FaceEmbedding
from model.verify.verifier import Verifier


@dataclass(frozen=True)
class BatchFace:
    """A face of the batch: found in image `image`, or given as embedding `embedding`."""

    embedded: FaceEmbedding
    image: int | None = None
    embedding: int | None = None


@dataclass(frozen=True)
class Grouping:
    groups: list[list[BatchFace]]  # two faces or more each, largest first
    ungrouped: list[BatchFace]
    no_face: list[int]  # images without a face
    rule: GroupingRule
    timings: dict[str, float]

    @property
    def faces(self) -> int:
        return sum(len(group) for group in self.groups) + len(self.ungrouped)


def too_many_faces(count: int, limit: int) -> ServiceError:
    return ServiceError("too_many_faces", f"{count} faces in the batch; at most {limit} are grouped at once")


@dataclass(frozen=True)
class GroupingService:
    verification: VerificationService

    @property
    def verifier(self) -> Verifier:
        return self.verification.verifier

    async def group(self, uploads: GroupUploads) -> Grouping:
        """The rule resolved and the embeddings accepted before any image is decoded; then every face
        of the images found and embedded on the inference thread, and the batch grouped."""
        settings = self.verification.settings
        rule = self.verifier.grouping_rule(uploads.options.threshold)
        given = [BatchFace(self.verification.accept(item, f"embeddings[{index}]"), embedding=index)
                 for index, item in enumerate(uploads.embeddings)]
        if not uploads.images and not given:
            raise ServiceError("empty_batch", "the batch is empty: send images and/or embeddings from /embed to group")
        if len(given) > settings.max_group_faces:
            raise too_many_faces(len(given), settings.max_group_faces)
        per_image, timings = [], dict(NO_TIMINGS)
        if uploads.images:
            per_image, timings = await self.verification.limiter.run("group", partial(
                embed_every_face, self.verifier, uploads.images, settings.max_image_pixels, settings.max_faces))
        faces = [BatchFace(face, image=index) for index, found in enumerate(per_image) for face in found] + given
        if len(faces) > settings.max_group_faces:
            raise too_many_faces(len(faces), settings.max_group_faces)
        labels = await run_in_threadpool(rule.group, np.stack([face.embedded.embedding for face in faces])
                                         if faces else np.zeros((0, 0), np.float32))
        together, alone = partition(labels)
        groups = [[faces[i] for i in group] for group in together]
        no_face = [index for index, found in enumerate(per_image) if not found]
        return Grouping(groups, [faces[i] for i in alone], no_face, rule, timings)
