"""A network made ready for an engine, behind one contract: called with NumPy arrays, it returns
its outputs as a flat list of NumPy arrays (`Network`).

Engines: `openvino`, networks compiled for this CPU, read from models saved ahead of time (the
lean serving path, which never imports torch) or converted from the torch module where a card
ships none; and `torch`, the reference, where torch is installed (`facever[torch]`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from model.types import ENGINE_NAMES

if TYPE_CHECKING:
    from torch import Tensor, nn

    from model.engines.openvino import CompiledNetwork

class Network(Protocol):
    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]: ...


class TorchMissing(RuntimeError):
    """What needs torch was asked for where it is not installed: the torch engine, or converting a
    network whose card ships no ready-made one."""


def require_torch(purpose: str) -> None:
    if importlib.util.find_spec("torch") is None:
        raise TorchMissing(f"{purpose} needs torch, which this installation leaves out: install the extra "
                           "(pip install 'facever[torch]'), or use the openvino engine and a card with "
                           "networks compiled ahead of time (the shipped default)")


def check_engine(engine: str) -> None:
    if engine not in ENGINE_NAMES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINE_NAMES)}")
    if engine == "torch":
        require_torch("the torch engine")


def compile_network(
    network: nn.Module,
    example: Sequence[Tensor],
    *,
    engine: str,
    precision: str = "float32",
    threads: int = 1,
    streams: int = 1,
    dynamic: Sequence[Sequence[int]] = ((0,),),
) -> Network:
    """`network` (in eval mode, with its weights) ready to run on `engine` in `precision`: as it is
    on torch, converted and compiled on OpenVINO. `example` is one input per argument (NCHW);
    `dynamic` the axes of each input that may vary (default: the batch of a single input);
    `streams` how many inferences may run at once, each on `threads`."""
    check_engine(engine)
    if engine == "torch":
        from model.engines.reference import TorchNetwork, with_precision

        return TorchNetwork(with_precision(network, precision))
    require_torch("converting a network for OpenVINO")
    from model.engines import openvino
    from model.engines.conversion import convert

    model = convert(network, example, dynamic)
    return openvino.CompiledNetwork(openvino.compile_model(model, precision, threads, streams))


def load_compiled(
    path: Path, *, precision: str, threads: int = 1, streams: int = 1, image_channels: str | None = None,
    channels_last: bool = False,
) -> CompiledNetwork:
    """A network saved as an OpenVINO model (e.g. quantized to int8), compiled for this CPU. With
    `image_channels` (the channel order its network takes, "RGB" or "BGR") it takes uint8 NHWC RGB
    images instead (openvino.with_image_input); with `channels_last`, NHWC float32."""
    from model.engines import openvino

    model = openvino.read_model(path)
    if image_channels:
        model = openvino.with_image_input(model, image_channels)
    elif channels_last:
        model = openvino.with_channels_last_input(model)
    return openvino.CompiledNetwork(openvino.compile_model(model, precision, threads, streams))


def load_network(
    engine: str,
    *,
    compiled: Path,
    reference: Callable[[], nn.Module],
    threads: int = 1,
    streams: int = 1,
    image_channels: str | None = None,
    channels_last: bool = False,
) -> Network:
    """A shipped float32 network: on openvino the model saved at `compiled`, as it is; on torch the
    module `reference()` builds with its weights. Both take the same arrays (see load_compiled)."""
    check_engine(engine)
    if engine == "openvino":
        return load_compiled(compiled, precision="float32", threads=threads, streams=streams,
                             image_channels=image_channels, channels_last=channels_last)
    from model.engines.reference import TorchNetwork

    return TorchNetwork(reference(), channels_last=channels_last, image_channels=image_channels)
