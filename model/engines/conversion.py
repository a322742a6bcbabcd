"""Torch modules converted to OpenVINO models: what converters ship beside their weights, and what
the openvino engine runs for a card shipped without ready-made networks.

Conversion goes straight from the torch module (no ONNX file in between): `ov.convert_model` traces
it with an example input. Needs torch; serving a card with its networks shipped never imports this.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import openvino as ov
import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from model.engines.openvino import save_model


_COUNTED_NAME = re.compile(r"[A-Za-z]+_\d+")


@functools.cache  # once, before the first conversion
def _without_telemetry() -> None:
    """OpenVINO's model converter sends usage telemetry unless a consent file declines it, and a
    face service sends nothing anywhere: point the converter at its own no-op stub."""
    from openvino.tools.ovc import convert_impl, telemetry_stub, telemetry_utils

    convert_impl.tm = telemetry_utils.tm = telemetry_stub


class _FlatOutputs(nn.Module):
    """The network with its outputs flattened to a tuple, as a traced graph must give them."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        return tuple(tree_flatten(self.network(*inputs))[0])


def convert(network: nn.Module, example: Sequence[Tensor], dynamic: Sequence[Sequence[int]]) -> ov.Model:
    """The network as an OpenVINO model (float32, as the torch module computes), each input's
    `dynamic` axes left free, its outputs flattened in torch's tree order."""
    _without_telemetry()
    shapes = [
        ov.PartialShape([-1 if axis in free else size for axis, size in enumerate(tensor.shape)])
        for tensor, free in zip(example, dynamic)
    ]
    with warnings.catch_warnings():  # OpenVINO traces with torch.jit, which torch now calls deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model = ov.convert_model(_FlatOutputs(network), example_input=tuple(example), input=shapes)
    # Named by their place in the graph, not by OpenVINO's process-wide counters (e.g. Constant_8809),
    # so a saved model's bytes do not depend on what else the process converted.
    model.set_friendly_name(type(network).__name__)
    for index, node in enumerate(model.get_ordered_ops()):
        if _COUNTED_NAME.fullmatch(node.get_friendly_name()):
            node.set_friendly_name(f"{node.get_type_name()}_{index}")
    return model


def save_converted(
    network: nn.Module, example: Sequence[Tensor], path: Path, dynamic: Sequence[Sequence[int]] = ((0,),)
) -> None:
    """`network` converted (float32) and saved at `path` (.xml, weights beside it in .bin), for
    model.engines.compile.load_compiled: what converters ship so that serving converts nothing."""
    save_model(convert(network, example, dynamic), path)
