"""Request shapes: the options of /verify and /embed, the same fields in a multipart form or a JSON
body, and the validated uploads a request body is read into (app/api/bodies.py)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.types import SelectionPolicy


class VerifyOptions(BaseModel):
    """How /verify decides; the same fields in a multipart form or a JSON body."""

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
    face_policy: SelectionPolicy | None = Field(None, description="which face to use when an image has several")

    @model_validator(mode="after")
    def _one_threshold_source(self) -> VerifyOptions:
        if self.threshold is not None and self.operating_point is not None:
            raise ValueError("give threshold or operating_point, not both")
        return self


class VerifyJSON(VerifyOptions):
    image1: str = Field(description="base64 image (a data: URL prefix is accepted)")
    image2: str = Field(description="base64 image (a data: URL prefix is accepted)")


class EmbedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    face_policy: SelectionPolicy | None = Field(None, description="which face to use when an image has several")


class EmbedJSON(EmbedOptions):
    images: list[str] = Field(min_length=1, description="base64 images (data: URL prefixes are accepted)")


@dataclass(frozen=True)
class VerifyUploads:
    image1: bytes
    image2: bytes
    options: VerifyOptions


@dataclass(frozen=True)
class EmbedUploads:
    images: list[bytes]
    options: EmbedOptions
