"""The torch engine: the reference networks as torch runs them, behind the engines' NumPy contract
(model/engines/compile.py), in float32 or, on CPUs that compute it natively, bfloat16.

In torch, bfloat16 runs by casting the weights and activations (ReducedPrecision); embeddings stay
float32 outside the network. Only the torch engine, training, evaluation and conversion import this.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_flatten

# torch's arithmetic by precision name (its dtype names); int8 is OpenVINO's only.
TORCH_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def load_state(network: nn.Module, path: Path) -> nn.Module:
    """`network` with the state dict at `path`, strictly loaded, for inference only."""
    network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return network.eval().requires_grad_(False)


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


class TorchNetwork:
    """A torch module with NumPy arrays in and its outputs, flattened in tree order, out.

    `channels_last`: inputs are NHWC float32, handed to the module as NCHW views of channels-last
    memory (the fast layout of depthwise and small convolutions on CPU). `image_channels`: inputs
    are uint8 NHWC RGB images, converted to float32 in that channel order ("RGB" or "BGR"), as
    model.engines.openvino.with_image_input does in a compiled graph.
    """

    def __init__(self, module: nn.Module, *, channels_last: bool = False, image_channels: str | None = None):
        self.module = module
        self.channels_last = channels_last or image_channels is not None
        self.image_channels = image_channels

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        if self.image_channels == "BGR":
            array = array[..., ::-1]
        if self.image_channels:
            array = array.astype(np.float32)
        tensor = torch.from_numpy(np.require(array, requirements=["C", "W"]))
        return tensor.permute(0, 3, 1, 2) if self.channels_last else tensor

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            outputs = self.module(*(self._tensor(array) for array in inputs))
            return [output.float().numpy() for output in tree_flatten(outputs)[0]]
