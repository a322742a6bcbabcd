"""An experiment's configuration, typed: every key has its default here and a misspelt one is refused.

A config file (JSON, or TOML by suffix) overrides some of the defaults; `name` defaults to the
file's stem and names weights/<name> and runs/<name>. `params` sections (the encoder's, the loss's,
the miner's) and the optimiser's keyword arguments pass through to what they configure.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.types import SelectionPolicy


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProtocolTest(_Section):
    """The test is a protocol's pairs: all of a file's (under the data folder), or one 0-based fold."""

    pairs: str
    fold: int | None = None


class SplitConfig(_Section):
    """Identity-disjoint train / validation / test parts. `file` None: made afresh each run (fixed by
    `seed` and a protocol's pairs); otherwise read from it, or written there on first use."""

    file: str | None = "configs/splits/att_faces.json"
    val: int = Field(5, ge=0)
    test: int | ProtocolTest = 5  # a count of identities, or the people of a protocol's pairs
    seed: int | None = None


class DataConfig(_Section):
    images: str = "att_faces"  # identity folders, relative to the data folder
    split: SplitConfig = SplitConfig()
    policy: SelectionPolicy = "central"


class TemplateConfig(_Section):
    """The alignment template (and detector) of a weights folder's card, at its size or another."""

    from_card: str = "weights/dlib-resnet-v1"
    size: int | None = None


class EncoderConfig(_Section):
    """A registered architecture from scratch, or `init_from` a weights folder with the parameters
    named by (or under) `freeze` held fixed."""

    name: str = "compact_cnn"
    params: dict[str, Any] = {}
    init_from: str | None = None
    freeze: list[str] = []


class LossConfig(_Section):
    name: str = "contrastive"
    params: dict[str, Any] = {}


class MinerConfig(_Section):
    name: str
    params: dict[str, Any] = {}


class SamplerConfig(_Section):
    p: int = 10
    k: int = 5
    batches_per_epoch: int | None = None  # None: as many as cover the training images once


class OptimiserConfig(BaseModel):
    """The optimiser by name; every other key is its keyword argument (lr, weight_decay, ...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 5e-4

    @property
    def arguments(self) -> dict[str, Any]:
        return self.model_dump(exclude={"name"})


class ScheduleConfig(_Section):
    name: Literal["constant", "cosine"] = "cosine"
    warmup_epochs: int = Field(1, ge=0)


class TrainingConfig(_Section):
    name: str = "experiment"
    seed: int = 0
    epochs: int = Field(40, ge=1)
    data: DataConfig = DataConfig()
    template: TemplateConfig = TemplateConfig()
    encoder: EncoderConfig = EncoderConfig()
    loss: LossConfig = LossConfig()
    miner: MinerConfig | None = None  # None: every pair or triplet of the batch
    sampler: SamplerConfig = SamplerConfig()
    optimiser: OptimiserConfig = OptimiserConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    augment: dict[str, float] = {}  # model.training.data.Augment's fields; {} takes its defaults


def parse_config(data: dict[str, Any], name: str = "experiment") -> TrainingConfig:
    """A config from its overrides; ValueError naming the first unknown or invalid key."""
    try:
        return TrainingConfig.model_validate({**data, "name": data.get("name") or name})
    except ValidationError as error:
        errors = error.errors()
        # A misspelt key explains the other errors of its section (e.g. the other members of a union).
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        *section, key = first["loc"]
        # Union members appear in the path by type ("int", "ProtocolTest"); the path names keys only.
        where = ".".join(["config", *(str(part) for part in section if str(part) != "int" and not str(part)[:1].isupper())])
        if first["type"] == "extra_forbidden":
            raise ValueError(f"unknown key {key!r} in {where}") from None
        raise ValueError(f"{where}.{key}: {first['msg']}") from None


def load_config(path: str | Path) -> TrainingConfig:
    path = Path(path)
    text = path.read_text()
    data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    return parse_config(data, name=data.get("name") or path.stem)
