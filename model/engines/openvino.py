"""Networks run by OpenVINO's CPU runtime, compiled for the CPU they run on, behind a torch module's face.

Conversion goes straight from the torch module (no ONNX file in between): `ov.convert_model` traces it
with an example input, and the result is compiled with the arithmetic pinned. OpenVINO would otherwise
lower float32 work to bfloat16 on its own on CPUs with native bfloat16 (AVX512-BF16, AMX), and a
card's calibration is valid only for the numerics it was measured in. Outputs come back as torch
tensors in the module's own structure (a tensor, or nested tuples and lists of them), so the code
around a network does not know which engine ran it.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch
from torch import Tensor, nn
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten

# OpenVINO's names for the arithmetic a compiled model computes in. An int8 model is quantized in its
# graph (FakeQuantize nodes); what is left between them runs in float32.
INFERENCE_PRECISION = {"float32": "f32", "bfloat16": "bf16", "int8": "f32"}

_core: ov.Core | None = None


@functools.cache  # once, before the first conversion
def _without_telemetry() -> None:
    """OpenVINO's model converter sends usage telemetry unless a consent file declines it, and a
    face service sends nothing anywhere: point the converter at its own no-op stub. Only
    conversion needs it: a service that reads its networks ready-made never imports the converter."""
    from openvino.tools.ovc import convert_impl, telemetry_stub, telemetry_utils

    convert_impl.tm = telemetry_utils.tm = telemetry_stub


def core() -> ov.Core:
    global _core
    if _core is None:
        _core = ov.Core()
    return _core


class _FlatOutputs(nn.Module):
    """The network with its outputs flattened to a tuple, as a traced graph must give them."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        return tuple(tree_flatten(self.network(*inputs))[0])


def convert(network: nn.Module, example: Sequence[Tensor], dynamic: Sequence[Sequence[int]]) -> tuple[ov.Model, TreeSpec]:
    """The network as an OpenVINO model (float32, as the torch module computes), each input's
    `dynamic` axes left free; and the structure of its outputs."""
    _without_telemetry()
    with torch.inference_mode():
        _, spec = tree_flatten(network(*example))
    shapes = [
        ov.PartialShape([-1 if axis in free else size for axis, size in enumerate(tensor.shape)])
        for tensor, free in zip(example, dynamic)
    ]
    with warnings.catch_warnings():  # OpenVINO traces with torch.jit, which torch now calls deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model = ov.convert_model(_FlatOutputs(network), example_input=tuple(example), input=shapes)
    return model, spec


def compile_model(model: ov.Model, precision: str, threads: int, streams: int = 1) -> ov.CompiledModel:
    """Compiled for `streams` inferences at once (a stream runs one at a time), each on `threads`."""
    return core().compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision],
        "INFERENCE_NUM_THREADS": threads * streams,
        "NUM_STREAMS": streams,
        "PERFORMANCE_HINT": "LATENCY",
        # The inference thread shares the cores with torch's alignment and the event loop: pinning
        # OpenVINO's threads to cores would make them wait on each other.
        "ENABLE_CPU_PINNING": False,
    })


def read_model(path: Path) -> ov.Model:
    return core().read_model(path)


def with_image_input(model: ov.Model, channels: str) -> ov.Model:
    """`model`, taking what a decoded image is (uint8, NHWC, RGB) in place of the float32 NCHW
    tensor in `channels` order ("RGB" or "BGR") its network takes: the conversion, the channel
    order and the layout are done in the compiled graph, exactly, instead of in NumPy beforehand."""
    from openvino.preprocess import ColorFormat, PrePostProcessor

    steps = PrePostProcessor(model)
    steps.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
        ColorFormat.RGB)
    steps.input().model().set_layout(ov.Layout("NCHW"))
    steps.input().preprocess().convert_element_type(ov.Type.f32).convert_color(getattr(ColorFormat, channels))
    return steps.build()


def save_model(model: ov.Model, path: Path) -> None:
    ov.save_model(model, path, compress_to_fp16=False)


class OpenVINONetwork(nn.Module):
    """A compiled network that takes and returns torch tensors. Each calling thread gets its own
    infer request (a request is not thread-safe; the compiled model is)."""

    def __init__(self, compiled: ov.CompiledModel, outputs: TreeSpec | None = None):
        super().__init__()
        self.compiled = compiled
        self.outputs = outputs  # None: a single output tensor
        self._local = threading.local()

    def _request(self) -> ov.InferRequest:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def forward(self, *inputs: Tensor) -> Any:
        flat = [torch.from_numpy(array) for array in
                self.infer_arrays(*(tensor.detach().float().numpy() for tensor in inputs))]
        return tree_unflatten(flat, self.outputs) if self.outputs is not None else flat[0]

    def infer_arrays(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """The outputs, flat, for inputs as NumPy arrays of the compiled model's own types (e.g.
        uint8 images, see with_image_input); copies, as the request reuses its buffers."""
        results = self._request().infer([np.ascontiguousarray(array) for array in inputs])
        return [np.array(results[output]) for output in self.compiled.outputs]

    def primitives(self) -> dict[str, int]:
        """How many nodes of the compiled graph each kernel runs (e.g. 'brgconv_avx2_f32'), to see
        which ISA and arithmetic the CPU plugin chose."""
        counts: dict[str, int] = {}
        for node in self.compiled.get_runtime_model().get_ops():
            info = node.get_rt_info()
            if "primitiveType" in info:
                name = info["primitiveType"].astype(str)
                counts[name] = counts.get(name, 0) + 1
        return counts
