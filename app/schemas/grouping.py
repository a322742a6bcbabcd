"""Request and response shapes of POST /group: a batch of faces (images and/or embeddings) grouped by person."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.requests import EmbeddingInput
from app.schemas.responses import Box, ModelRef, Timings, elapsed_ms
from model.card import EncoderCard

if TYPE_CHECKING:  # the service's result, which the response is made of
    from app.services.grouping import BatchFace, Grouping


class GroupOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(
        None, gt=0, le=2, description="in place of the calibrated threshold (see /info): a larger one merges more"
    )


class GroupJSON(GroupOptions):
    images: list[str] = Field([], description="base64 images (data: URL prefixes are accepted); every face is grouped")
    embeddings: list[EmbeddingInput] = Field([], description="embedding objects from /embed of this model")


@dataclass(frozen=True)
class GroupUploads:
    images: list[bytes]
    embeddings: list[EmbeddingInput]
    options: GroupOptions


class GroupedFace(BaseModel):
    """One face of the batch: a face found in an image (`image`, `box`), or an embedding given (`embedding`)."""

    image: int | None = Field(description="the index of its image in the request; null for an embedding")
    box: Box | None = Field(description="the face in its image's pixels; null for an embedding")
    detection_score: float | None
    embedding: int | None = Field(description="the index of the embedding in the request; null for an image's face")

    @classmethod
    def of(cls, face: BatchFace) -> GroupedFace:
        found = face.embedded.face
        box = None if found is None else Box(**dict(zip(("x1", "y1", "x2", "y2"), (round(float(v), 2)
                                                                                   for v in found.box))))
        return cls(image=face.image, box=box, detection_score=None if found is None else round(float(found.score), 4),
                   embedding=face.embedding)


class GroupingInfo(BaseModel):
    rule: str = Field(description="average_linkage: groups merge while the mean distance between their faces is "
                      "below the threshold")
    threshold: float
    calibrated: bool = Field(description="the card's threshold, chosen on LFW View 1; false: the request's own")
    link_far: float | None = Field(description="the share of impostor pairs (two people) closer than the "
                                   "calibrated threshold; null for a request's own")


class GroupResponse(BaseModel):
    groups: list[list[GroupedFace]] = Field(description="faces of one person each, largest group first")
    ungrouped: list[GroupedFace] = Field(description="faces that fit no group: no other face is of the same person")
    no_face: list[int] = Field(description="indexes of the images in which no face was found")
    faces: int
    grouping: GroupingInfo
    model: ModelRef
    timings_ms: Timings
    request_id: str

    @classmethod
    def of(cls, result: Grouping, card: EncoderCard, state: Any) -> GroupResponse:
        rule = result.rule
        return cls(
            groups=[[GroupedFace.of(face) for face in group] for group in result.groups],
            ungrouped=[GroupedFace.of(face) for face in result.ungrouped], no_face=result.no_face,
            faces=result.faces,
            grouping=GroupingInfo(rule=rule.rule, threshold=rule.threshold, calibrated=rule.link_far is not None,
                                  link_far=rule.link_far),
            model=ModelRef.of(card), timings_ms=Timings(**result.timings, total=elapsed_ms(state.started)),
            request_id=state.request_id,
        )
