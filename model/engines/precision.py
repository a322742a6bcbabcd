"""Which arithmetic a network may run in here: float32 everywhere; bfloat16 where the CPU computes
it natively; int8 through OpenVINO, from a model quantized ahead of time.

On CPUs with bfloat16 dot-product instructions (AVX512-BF16, AMX) bfloat16 convolutions take about
half the time of float32 ones; elsewhere bfloat16 is emulated and slower, so it is used only where it
pays. Torch-free: the serving path decides this before any engine loads.
"""

from __future__ import annotations

import logging

from model.engines.cpu import native_bfloat16
from model.types import PRECISION_NAMES

logger = logging.getLogger(__name__)


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
