"""The path parameters the gallery routes share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from app.schemas.galleries import ID_REGEX

GalleryId = Annotated[str, Path(pattern=ID_REGEX, description="a gallery's id")]
SubjectId = Annotated[str, Path(pattern=ID_REGEX, description="a subject's id")]
