"""Request shapes: the options of /verify and /embed (accepted in the body, as form or JSON fields, and
in the query string), an embedding given back, and the validated uploads a request body is read into
(app/api/bodies.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.responses import EmbeddingModelRef, FaceSummary
from model.types import SelectionPolicy, VerifyPolicy

# The largest embedding accepted: well above any encoder's (256 for the default).
MAX_EMBEDDING_VALUES = 4096

QualityFloor = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | Literal["low", "medium", "high"]
MIN_QUALITY = Field(
    None, description="refuse (422 low_quality) a face whose quality score is below this (0..1) or below this "
    "level's lowest score (see /info); default: the service's",
)


class VerifyOptions(BaseModel):
    """How /verify decides and which faces it compares."""

    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(
        None,
        ge=0,
        le=2,
        allow_inf_nan=False,
        description="same person when the distance is at or below this; instead of an operating point",
    )
    operating_point: str | None = Field(
        None, min_length=1, max_length=64, description="a calibrated operating point by name (see /info)"
    )
    face_policy: VerifyPolicy | None = Field(
        None,
        description="which face of an image to use when it has several (default: the service's, see /info); "
        "`all`: the chosen face of image1 against every face of image2 (of image1 where image2 is an embedding)",
    )

    min_quality: QualityFloor | None = MIN_QUALITY

    @model_validator(mode="after")
    def _one_threshold_source(self) -> VerifyOptions:
        if self.threshold is not None and self.operating_point is not None:
            raise ValueError("give threshold or operating_point, not both")
        return self


class EmbedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    face_policy: SelectionPolicy | None = Field(
        None, description="which face of an image to use when it has several (default: the service's, see /info)"
    )
    min_quality: QualityFloor | None = MIN_QUALITY


class EmbeddingInput(BaseModel):
    """An embedding as /embed returned it, sent back in place of an image. `model` must be the
    serving model's; `dim`, where given, must match; `face` is accepted so that the object can be
    sent back unchanged, and not used."""

    model_config = ConfigDict(extra="forbid")

    embedding: list[float] = Field(min_length=1, max_length=MAX_EMBEDDING_VALUES)
    model: EmbeddingModelRef
    dim: int | None = None
    face: FaceSummary | None = None

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        if isinstance(data, list):
            raise ValueError("send the embedding object /embed returned ({embedding, model, dim, face}), "
                             "not a bare list of numbers")
        return data

    @model_validator(mode="after")
    def _dim_matches(self) -> EmbeddingInput:
        if self.dim is not None and self.dim != len(self.embedding):
            raise ValueError(f"dim is {self.dim} but the embedding has {len(self.embedding)} values")
        return self


class VerifyJSON(VerifyOptions):
    """Each side is an image or an embedding: image1 or embedding1, image2 or embedding2."""

    image1: str | None = Field(None, description="base64 image (a data: URL prefix is accepted)")
    image2: str | None = Field(None, description="base64 image (a data: URL prefix is accepted)")
    embedding1: EmbeddingInput | None = Field(None, description="in place of image1: an embedding from /embed")
    embedding2: EmbeddingInput | None = Field(None, description="in place of image2: an embedding from /embed")


class EmbedJSON(EmbedOptions):
    images: list[str] = Field(min_length=1, description="base64 images (data: URL prefixes are accepted)")


@dataclass(frozen=True)
class VerifySide:
    """One side of a /verify: an image's bytes or an embedding given back (exactly one)."""

    label: str  # the field it came in: image1, embedding2, ...
    image: bytes | None = None
    embedding: EmbeddingInput | None = None


@dataclass(frozen=True)
class VerifyUploads:
    first: VerifySide
    second: VerifySide
    options: VerifyOptions


@dataclass(frozen=True)
class EmbedUploads:
    images: list[bytes]
    options: EmbedOptions
