"""OpenVINO's CPU runtime: networks saved as OpenVINO models, compiled for the CPU they run on, with
NumPy arrays in and out. Torch-free: the serving path reads its networks ready-made (conversion from
torch is model/engines/conversion.py's, ahead of time or for a card shipped without them).

Models are compiled with the arithmetic pinned. OpenVINO would otherwise lower float32 work to
bfloat16 on its own on CPUs with native bfloat16 (AVX512-BF16, AMX), and a card's calibration is
valid only for the numerics it was measured in.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import openvino as ov
# The binding under openvino.InferRequest (pinned with openvino): its infer() takes the inputs as
# Tensors as they are, where the Python wrapper's dispatch inspects every call's inputs first, which
# cost a quarter of a small graph's time (alignment's samplers) and about 1 ms a request in all.
from openvino._pyopenvino import InferRequest as _BoundInferRequest

# OpenVINO's names for the arithmetic a compiled model computes in. An int8 model is quantized in its
# graph (FakeQuantize nodes); what is left between them runs in float32.
INFERENCE_PRECISION = {"float32": "f32", "bfloat16": "bf16", "int8": "f32"}

# Entries of the CPU plugin's per-shape cache (of prepared kernels) that a compiled model keeps, least
# recently used first out. Its default, 5,000, let a network of dynamic input (the detectors', the
# alignment's sampler) keep a few MiB for every input shape it ever saw: memory climbed with every new
# photo size. Every shape a served network meets often fits in this many (bench.memory).
RUNTIME_CACHE_CAPACITY = 300

_core: ov.Core | None = None


def core() -> ov.Core:
    global _core
    if _core is None:
        _core = ov.Core()
    return _core


def compile_model(model: ov.Model, precision: str, threads: int, streams: int = 1) -> ov.CompiledModel:
    """Compiled for `streams` inferences at once (a stream runs one at a time), each on `threads`."""
    return core().compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision],
        "INFERENCE_NUM_THREADS": threads * streams,
        "NUM_STREAMS": streams,
        "PERFORMANCE_HINT": "LATENCY",
        # The inference thread shares the cores with alignment and the event loop: pinning
        # OpenVINO's threads to cores would make them wait on each other.
        "ENABLE_CPU_PINNING": False,
        "CPU_RUNTIME_CACHE_CAPACITY": RUNTIME_CACHE_CAPACITY,
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


def with_channels_last_input(model: ov.Model) -> ov.Model:
    """`model`, taking its float32 input NHWC (channels-last, as NumPy image arrays lie) instead of
    NCHW: the transpose is done in the compiled graph."""
    from openvino.preprocess import PrePostProcessor

    steps = PrePostProcessor(model)
    steps.input().tensor().set_layout(ov.Layout("NHWC"))
    steps.input().model().set_layout(ov.Layout("NCHW"))
    return steps.build()


def save_model(model: ov.Model, path: Path) -> None:
    ov.save_model(model, path, compress_to_fp16=False)


class CompiledNetwork:
    """A compiled network as the engines' one contract (model/engines/compile.py): NumPy arrays in,
    its outputs as a flat list of NumPy arrays out. Each calling thread gets its own infer request
    (a request is not thread-safe; the compiled model is)."""

    def __init__(self, compiled: ov.CompiledModel):
        self.compiled = compiled
        self._local = threading.local()

    def _request(self) -> ov.InferRequest:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def _infer(self, inputs: tuple[np.ndarray, ...]) -> ov.InferRequest:
        request = self._request()
        tensors = {index: ov.Tensor(np.ascontiguousarray(array), shared_memory=True)
                   for index, array in enumerate(inputs)}
        _BoundInferRequest.infer(request, tensors, True, False)
        return request

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Inputs of the compiled model's own types (float32, or uint8 images, see
        with_image_input), read in place (the call is synchronous); the outputs are copies, as the
        request reuses its buffers."""
        request = self._infer(inputs)
        return [np.array(request.get_output_tensor(index).data) for index in range(len(self.compiled.outputs))]

    def infer_into(self, out: np.ndarray, *inputs: np.ndarray) -> None:
        """The single output written into `out` (of its shape): no array allocated per call."""
        np.copyto(out, self._infer(inputs).get_output_tensor(0).data.reshape(out.shape))

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
