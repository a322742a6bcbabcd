"""SFace conversion pieces on hand-made arrays and graphs (no ONNX file and no onnx package)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.convert.onnx_graph import Graph, Node, dequantize_blocked
from model.convert.sface import ConversionError, GraphWalker
from model.encoders.sface import CHUNK, EMBEDDING_DIM, INPUT_SIZE, SFace


def test_dequantize_blocks_along_axis_1_with_a_short_last_block():
    quantized = np.array([[1, 2, 3, 4, 5], [-1, -2, -3, -4, -5]], dtype=np.int8)
    scale = np.array([[0.5, 1.0, 2.0], [0.25, 0.5, 4.0]], dtype=np.float32)
    zero_point = np.array([[1, 0, -1], [0, 2, 1]], dtype=np.int8)
    values = dequantize_blocked(quantized, scale, zero_point, axis=1, block_size=2)
    expected = [[0.0, 0.5, 3.0, 4.0, 12.0], [-0.25, -0.5, -2.5, -3.0, -24.0]]
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, expected)


def test_dequantize_one_dimensional_along_axis_0():
    quantized = np.array([10, 20, 30], dtype=np.int8)
    values = dequantize_blocked(
        quantized, np.array([0.5, 2.0], np.float32), np.array([0, 10], np.int8), 0, 2
    )
    np.testing.assert_array_equal(values, [5.0, 10.0, 40.0])


def test_dequantize_block_longer_than_the_axis():
    quantized = np.array([[-128, 0, 127]], dtype=np.int8)  # 3 values, block 64: one block
    values = dequantize_blocked(
        quantized, np.array([[0.5]], np.float32), np.array([[-128]], np.int8), 1, 64
    )
    np.testing.assert_array_equal(values, [[0.0, 64.0, 127.5]])


@pytest.mark.parametrize(
    ("scale_shape", "zero_dtype", "block_size"),
    [((2, 2), np.int8, 2), ((2, 3), np.uint8, 2), ((2, 3), np.int8, 0)],
)
def test_dequantize_refuses_inconsistent_blocks(scale_shape, zero_dtype, block_size):
    quantized = np.zeros((2, 5), dtype=np.int8)
    with pytest.raises(ConversionError):
        dequantize_blocked(
            quantized, np.ones(scale_shape, np.float32), np.zeros((2, 3), zero_dtype), 1, block_size
        )


def _graph(extra_initializers: dict[str, np.ndarray] | None = None) -> Graph:
    """x -> Mul(x, w) -> y, with w int8 block-quantised and reshaped, as SFace stores weights."""
    initializers = {
        "w_q": np.array([[2, 4, 6, 8]], dtype=np.int8),
        "w_scale": np.array([[0.5, 0.25]], dtype=np.float32),
        "w_zero": np.array([[0, 4]], dtype=np.int8),
        "w_shape": np.array([2, 2], dtype=np.int64),
        **(extra_initializers or {}),
    }
    blocks_of_2 = {"axis": 1, "block_size": 2}
    nodes = (
        Node("DequantizeLinear", "dq", ("w_q", "w_scale", "w_zero"), ("w_dq",), blocks_of_2),
        Node("Reshape", "reshape", ("w_dq", "w_shape"), ("w",), {}),
        Node("Mul", "mul", ("x", "w"), ("y",), {}),
    )
    return Graph("x", ("y",), initializers, nodes)


def test_walker_folds_weights_and_accounts_for_every_initializer():
    walker = GraphWalker(_graph())
    node, (weight,) = walker.take("Mul", {}, 1)
    assert node.name == "mul"
    np.testing.assert_array_equal(weight, [[1.0, 2.0], [0.5, 1.0]])
    walker.finish()


def test_walker_refuses_an_unread_initializer():
    walker = GraphWalker(_graph({"stray": np.zeros(3, np.float32)}))
    walker.take("Mul", {}, 1)
    with pytest.raises(ConversionError, match="stray"):
        walker.finish()


@pytest.mark.parametrize(
    ("op", "attrs", "constants"), [("Add", {}, 1), ("Mul", {"axis": 1}, 1), ("Mul", {}, 2)]
)
def test_walker_refuses_an_unexpected_node(op, attrs, constants):
    with pytest.raises(ConversionError):
        GraphWalker(_graph()).take(op, attrs, constants)


def test_walker_refuses_a_graph_that_goes_on():
    walker = GraphWalker(_graph())
    with pytest.raises(ConversionError, match="left"):
        walker.finish()


@pytest.mark.parametrize("batch", [0, 1, CHUNK + 1])  # CHUNK + 1: a second, shorter pass
def test_sface_output_shape(batch):
    with torch.inference_mode():
        embeddings = SFace().eval()(torch.rand(batch, 3, INPUT_SIZE, INPUT_SIZE) * 255)
    assert embeddings.shape == (batch, EMBEDDING_DIM)
