"""A network made ready for an engine: torch as it is, in the precision asked for; OpenVINO converted
from the torch module and compiled for this CPU, or read from a model saved ahead of time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from model.engines.precision import with_precision


def compile_network(
    network: nn.Module,
    example: Sequence[Tensor],
    *,
    engine: str,
    precision: str = "float32",
    threads: int = 1,
    streams: int = 1,
    dynamic: Sequence[Sequence[int]] = ((0,),),
) -> nn.Module:
    """`network` (in eval mode, with its weights) ready to run on `engine` in `precision`.
    `example` is one input per argument; `dynamic` the axes of each input that may vary (default:
    the batch of a single input); `streams` how many inferences may run at once, each on `threads`."""
    if engine == "torch":
        return with_precision(network, precision)
    if engine != "openvino":
        raise ValueError(f"unknown engine {engine!r}; known: torch, openvino")
    from model.engines import openvino  # imported only where it runs

    model, outputs = openvino.convert(network, example, dynamic)
    return openvino.OpenVINONetwork(openvino.compile_model(model, precision, threads, streams), outputs)


def load_compiled(
    path: Path, *, precision: str, threads: int = 1, streams: int = 1, outputs: Any = None,
    image_channels: str | None = None,
) -> nn.Module:
    """A network saved as an OpenVINO model (e.g. quantized to int8), compiled for this CPU. Its
    outputs come back in the structure `outputs` has (any nesting of tuples and lists, with anything
    at the leaves), or as one tensor. With `image_channels` (the channel order its network takes,
    "RGB" or "BGR") it takes uint8 NHWC RGB images instead (openvino.with_image_input)."""
    from model.engines import openvino

    spec = None if outputs is None else tree_flatten(outputs)[1]
    model = openvino.read_model(path)
    if image_channels:
        model = openvino.with_image_input(model, image_channels)
    return openvino.OpenVINONetwork(openvino.compile_model(model, precision, threads, streams), spec)


def save_compiled(
    network: nn.Module, example: Sequence[Tensor], path: Path, dynamic: Sequence[Sequence[int]] = ((0,),)
) -> None:
    """`network` converted to an OpenVINO model (float32) and saved at `path` (.xml, weights beside
    it in .bin), for `load_compiled`: what converters ship so that serving converts nothing."""
    from model.engines import openvino

    openvino.save_model(openvino.convert(network, example, dynamic)[0], path)
