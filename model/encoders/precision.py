"""Inference precision: float32, or bfloat16 weights and activations where the CPU computes it natively.

On CPUs with bfloat16 dot-product instructions (AVX512-BF16, AMX) oneDNN's bfloat16 convolutions take
about half the time of float32 ones; elsewhere bfloat16 is emulated and slower, so it is used only
where it pays. Embeddings stay float32 outside the encoder: only the network runs in bfloat16.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from model.types import PRECISION_NAMES

# Each precision's name is torch's name for its dtype.
PRECISIONS: dict[str, torch.dtype] = {name: getattr(torch, name) for name in PRECISION_NAMES}

logger = logging.getLogger(__name__)


def native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions that oneDNN uses."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def usable_precision(requested: str) -> str:
    """`requested`, unless it is bfloat16 on a CPU that would only emulate it: then float32."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {requested!r}")
    if requested == "bfloat16" and not native_bfloat16():
        logger.warning("this CPU has no native bfloat16: running the encoder in float32 instead")
        return "float32"
    return requested


class ReducedPrecision(nn.Module):
    """Runs `encoder` with its weights and activations in `dtype`; takes and returns float32, as the
    encoder contract says. Chips of 0..255 survive the cast to bfloat16 to within half a grey level."""

    def __init__(self, encoder: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.encoder = encoder.to(dtype)
        self.dtype = dtype

    def forward(self, *chips: torch.Tensor) -> torch.Tensor:
        return self.encoder(*(batch.to(self.dtype) for batch in chips)).float()


def with_precision(encoder: nn.Module, precision: str) -> nn.Module:
    dtype = PRECISIONS[precision]
    return encoder if dtype == torch.float32 else ReducedPrecision(encoder, dtype)
