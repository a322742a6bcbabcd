"""Service settings: one frozen object read from FACEVER_* environment variables and validated once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.storage.crypto import TemplateCipher, parse_keys
from model.paths import DEFAULT_ENCODER_DIR, WEIGHTS_DIR
from model.types import DetectorChoice, Engine, Precision, SelectionPolicy

CommaSeparated = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACEVER_", frozen=True, extra="forbid", env_ignore_empty=True
    )

    weights_dir: Path = Field(
        DEFAULT_ENCODER_DIR, description="encoder weights folder (model.json + its weights), or a shipped card's "
        "name (e.g. sface-2021dec-yunet-int8): that folder of detectors_dir, where the shipped networks lie",
    )
    detectors_dir: Path = Field(WEIGHTS_DIR, description="folder holding each detector's weights folder")
    detector: DetectorChoice | None = Field(
        None, description="'yunet', 'mtcnn' or 'yunet+mtcnn' (MTCNN where YuNet finds nothing); unset = the card's own"
    )
    flip_tta: bool | None = Field(None, description="mirror test-time augmentation; unset = the card's default")
    precision: Precision | None = Field(
        None, description="encoder arithmetic; unset = the card's own where the engine and CPU run it natively, else float32"
    )
    engine: Engine | None = Field(None, description="what runs the networks: torch or openvino; unset = the card's own")
    face_policy: SelectionPolicy = Field(
        "subject", description="which face of an image to use when it has several (a request may ask for another)"
    )
    min_quality: float | Literal["low", "medium", "high"] | None = Field(
        None, description="refuse probe faces (/verify, /embed, subject verification) below this quality score "
        "or level; a request may set its own",
    )
    enrol_min_quality: float | Literal["low", "medium", "high"] | None = Field(
        "medium", description="refuse enrolling faces below this quality score or level; a request may set its own",
    )
    max_faces: int = Field(32, ge=1, le=256, description="most faces face_policy=all compares (the largest)")
    min_face_size: int = Field(20, ge=12, le=4096, description="smallest face (pixels) the detector looks for")
    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0, description="largest request body accepted")
    max_image_pixels: int = Field(40_000_000, gt=0, description="largest image (width x height) decoded")
    max_embed_images: int = Field(16, ge=1, le=256, description="most images in one /embed request, and in one enrolment")
    max_group_images: int = Field(64, ge=1, le=1000, description="most images in one /group request")
    max_group_faces: int = Field(
        1000, ge=2, le=10_000, description="most faces one /group request groups: its images' faces and its "
        "embeddings together",
    )
    api_keys: CommaSeparated = Field(
        (), repr=False, description="accepted X-API-Key values; empty = no authentication"
    )
    write_api_keys: CommaSeparated = Field(
        (), repr=False,
        description="X-API-Key values that may also enrol and delete (galleries, subjects, faces); "
        "empty = any accepted key may",
    )
    key_rate_per_s: float = Field(
        50.0, gt=0, description="requests a second a stored API key may send on average, unless the key sets "
        "its own (keys from FACEVER_API_KEYS are not limited)",
    )
    key_burst: int = Field(100, ge=1, description="requests a stored API key may send at once, unless it sets its own")
    auth_failure_limit: int = Field(
        20, ge=1, description="failed authentications from one client address, within auth_failure_window_s, after "
        "which it is refused (429) before any key is checked",
    )
    auth_failure_window_s: float = Field(60.0, gt=0, description="the window of auth_failure_limit, in seconds")
    audit_retention_days: float | None = Field(
        None, gt=0, description="audit entries older than this are deleted (the chain's anchor moves on); unset = "
        "kept for ever",
    )
    template_keys: str | None = Field(
        None, repr=False, description="keys that seal stored templates (AES-256-GCM): id:base64 of 32 bytes, "
        "comma-separated, the first seals; unset = templates stored in the clear",
    )
    template_keys_file: Path | None = Field(
        None, description="a file holding the template keys, as FACEVER_TEMPLATE_KEYS takes them (a mounted secret)",
    )
    storage_url: str = Field(
        "sqlite:///data/facever.sqlite3", repr=False,
        description="where enrolled subjects live: sqlite:///<path> (relative to the working directory; "
        "sqlite:////<absolute path>), postgresql://user:password@host/db, or off",
    )
    enrol_operating_point: str = Field(
        "far_1e-4", description="a new face must match the subject's templates at this subject-level operating "
        "point to be enrolled (unless the request sets allow_mismatch)",
    )
    max_templates_per_subject: int = Field(100, ge=1, le=10_000, description="templates one subject may hold")
    demo: bool = Field(True, description="serve the demo page at /demo (the Kubernetes manifest turns it off)")
    cors_origins: CommaSeparated = Field((), description="origins allowed by CORS; empty = CORS off")
    # One inference at a time on all cores: as many verifies per second as two on one core each,
    # and a single request twice as fast (bench/latency.py; docs/performance.md).
    max_concurrency: int = Field(1, ge=1, description="inferences running at once")
    max_queue: int = Field(8, ge=0, description="requests waiting for an inference slot before 503 overloaded")
    request_timeout_s: float = Field(10.0, gt=0, description="deadline for waiting plus inference, else 503 timeout")
    inference_threads: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("inference_threads", "FACEVER_INFERENCE_THREADS",
                                                  "FACEVER_TORCH_THREADS"),
        description="the networks' threads per inference (OpenVINO's, or torch's on the torch engine); "
        "unset = usable cores / max_concurrency. FACEVER_TORCH_THREADS, its name before, is read too",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def threads_per_inference(self) -> int:
        """`inference_threads`, by default the cores this process may use shared among the inferences
        that may run at once, so concurrent requests never oversubscribe the CPU."""
        if self.inference_threads:
            return self.inference_threads
        return max(1, len(os.sched_getaffinity(0)) // self.max_concurrency)

    @property
    def encoder_dir(self) -> Path:
        """weights_dir, a bare name being a folder of detectors_dir (the shipped cards lie beside the
        detectors, in the checkout and in the image)."""
        if len(self.weights_dir.parts) == 1 and not self.weights_dir.is_dir():
            return self.detectors_dir / self.weights_dir
        return self.weights_dir

    @field_validator("api_keys", "write_api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        """Environment variables carry lists as `a,b,c`; blanks around commas are ignored."""
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    def template_cipher(self) -> TemplateCipher | None:
        """The cipher of the template keys given (the variable, else the file); None: none given.
        ValueError for malformed keys, naming no key."""
        text = self.template_keys or (self.template_keys_file.read_text() if self.template_keys_file else None)
        return TemplateCipher(parse_keys(text)) if text else None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value
