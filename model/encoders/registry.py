"""Encoder registry: architecture name -> nn.Module class, each network's module imported when first asked for.

Contract of every encoder: `forward(*chips)` takes one batch of float32 RGB chips shaped (N, 3, H, W)
with values in 0..255 (the aligned output, un-normalised) per alignment template of its card (most
encoders have one) and returns raw embeddings (N, D). Each encoder applies its own input
normalisation, so the pipeline never needs to know it.
"""

from __future__ import annotations

from torch import nn

from model.registry import Registry

# The shipped architectures and the module that registers each: a card builds only what it names.
ENCODERS: Registry[type[nn.Module]] = Registry("encoder", modules={
    "compact_cnn": "model.encoders.compact_cnn",
    "dlib_resnet": "model.encoders.dlib_resnet",
    "fused": "model.encoders.fused",
    "sface": "model.encoders.sface",
})
register_encoder = ENCODERS.register
build_encoder = ENCODERS.build
