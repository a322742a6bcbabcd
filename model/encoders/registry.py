"""Encoder registry: architecture name -> nn.Module class, each network's module imported when first asked for.

Contract of every encoder: `forward(*chips)` takes one batch of float32 RGB chips shaped (N, 3, H, W)
with values in 0..255 (the aligned output, un-normalised) per alignment template of its card (most
encoders have one) and returns raw embeddings (N, D). Each encoder applies its own input
normalisation, so the pipeline never needs to know it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

ENCODERS: dict[str, type[nn.Module]] = {}

# The shipped architectures and the module that registers each: a card builds only what it names.
BUILTIN_MODULES = {
    "compact_cnn": "model.encoders.compact_cnn",
    "dlib_resnet": "model.encoders.dlib_resnet",
    "fused": "model.encoders.fused",
    "sface": "model.encoders.sface",
}


def register_encoder(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        if name in ENCODERS:
            raise ValueError(f"encoder {name!r} is registered twice")
        ENCODERS[name] = cls
        return cls

    return decorate


def build_encoder(name: str, **params) -> nn.Module:
    if name not in ENCODERS and name in BUILTIN_MODULES:
        importlib.import_module(BUILTIN_MODULES[name])
    try:
        cls = ENCODERS[name]
    except KeyError:
        known = sorted(set(ENCODERS) | set(BUILTIN_MODULES))
        raise ValueError(f"unknown encoder {name!r}; known: {known}") from None
    return cls(**params)
