"""Which arithmetic a network may run in here: float32 everywhere; bfloat16 where the CPU computes
it natively; int8 through OpenVINO, from a model quantized ahead of time.

On CPUs with bfloat16 dot-product instructions (AVX512-BF16, AMX) bfloat16 convolutions take about
half the time of float32 ones; elsewhere bfloat16 is emulated and slower, so it is used only where it
pays. In torch, bfloat16 runs by casting the weights and activations (ReducedPrecision); embeddings
stay float32 outside the network.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from model.types import PRECISION_NAMES

# torch's arithmetic by precision name (its dtype names); int8 is OpenVINO's only.
TORCH_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}

logger = logging.getLogger(__name__)


def native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions that oneDNN uses."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def usable_precision(requested: str, engine: str = "torch") -> str:
    """`requested`, unless it is bfloat16 on a CPU that would only emulate it: then float32.
    int8 needs the OpenVINO engine and a quantized model."""
    if requested not in PRECISION_NAMES:
        raise ValueError(f"precision must be one of {list(PRECISION_NAMES)}, not {requested!r}")
    if requested == "int8" and engine != "openvino":
        raise ValueError("int8 runs only on the openvino engine, from a model quantized by `facever quantize`")
    if requested == "bfloat16" and not native_bfloat16():
        logger.warning("this CPU has no native bfloat16: running the encoder in float32 instead")
        return "float32"
    return requested


def default_precision(card_precision: str, engine: str) -> str:
    """A card's own precision where `engine` can run it; else float32 (int8 networks are OpenVINO's)."""
    if card_precision == "int8" and engine != "openvino":
        logger.warning("int8 runs only on the openvino engine: running the encoder in float32 on %s", engine)
        return "float32"
    return card_precision


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
    dtype = TORCH_DTYPES[precision]
    return encoder if dtype == torch.float32 else ReducedPrecision(encoder, dtype)
