"""YuNet conversion pieces on hand-made graphs (no ONNX file and no onnx package)."""

from __future__ import annotations

import numpy as np
import pytest

from model.convert.base import ConversionError
from model.convert.onnx_graph import Graph, Node
from model.convert.yunet import OUTPUT_NAMES, NodeSequence


def _graph(extra_nodes: tuple[Node, ...] = (), **extra_initializers: np.ndarray) -> Graph:
    """x -> Conv(x, w, b) -> Relu -> y, with w int8 block-quantised and reshaped and b float, as
    YuNet stores its layers; y stands for the network's outputs."""
    initializers = {
        "w_q": np.array([[2, 4, 6, 8]], dtype=np.int8),
        "w_scale": np.array([[0.5, 0.25]], dtype=np.float32),
        "w_zero": np.array([[0, 4]], dtype=np.int8),
        "w_shape": np.array([1, 4, 1, 1], dtype=np.int64),
        "b": np.array([0.5], dtype=np.float32),
        **extra_initializers,
    }
    nodes = (
        Node("DequantizeLinear", "dq", ("w_q", "w_scale", "w_zero"), ("w_dq",),
             {"axis": 1, "block_size": 2}),
        Node("Reshape", "reshape", ("w_dq", "w_shape"), ("w",), {}),
        Node("Conv", "conv", ("x", "w", "b"), ("c",), {"group": 1}),
        Node("Relu", "relu", ("c",), ("y",), {}),
        *extra_nodes,
    )
    return Graph("x", OUTPUT_NAMES, initializers, nodes)


def test_weights_are_dequantised_and_every_node_and_initializer_accounted_for():
    nodes = NodeSequence(_graph())
    c, (weight, bias) = nodes.take("Conv", ("x",), {"group": 1}, 2)
    np.testing.assert_array_equal(weight, np.array([1.0, 2.0, 0.5, 1.0]).reshape(1, 4, 1, 1))
    np.testing.assert_array_equal(bias, [0.5])
    assert nodes.take("Relu", (c,), {}, 0) == ("y", [])
    nodes.finish()


@pytest.mark.parametrize(
    ("op", "data", "attrs", "constants"),
    [
        ("BatchNormalization", ("x",), {"group": 1}, 2),
        ("Conv", ("z",), {"group": 1}, 2),
        ("Conv", ("x",), {"group": 2}, 2),
        ("Conv", ("x",), {"group": 1}, 1),
    ],
)
def test_an_unexpected_node_is_refused(op, data, attrs, constants):
    with pytest.raises(ConversionError):
        NodeSequence(_graph()).take(op, data, attrs, constants)


def test_an_unread_initializer_is_refused():
    nodes = NodeSequence(_graph(stray=np.zeros(3, np.float32)))
    nodes.take("Relu", (nodes.take("Conv", ("x",), {"group": 1}, 2)[0],), {}, 0)
    with pytest.raises(ConversionError, match="stray"):
        nodes.finish()


def test_a_graph_that_goes_on_is_refused():
    nodes = NodeSequence(_graph((Node("Sigmoid", "extra", ("y",), ("z",), {}),)))
    nodes.take("Relu", (nodes.take("Conv", ("x",), {"group": 1}, 2)[0],), {}, 0)
    with pytest.raises(ConversionError, match="left"):
        nodes.finish()


def test_other_outputs_are_refused():
    graph = _graph()
    nodes = NodeSequence(Graph(graph.input, OUTPUT_NAMES[::-1], graph.initializers, graph.nodes))
    nodes.take("Relu", (nodes.take("Conv", ("x",), {"group": 1}, 2)[0],), {}, 0)
    with pytest.raises(ConversionError, match="outputs"):
        nodes.finish()


def test_an_unknown_constant_op_is_refused():
    with pytest.raises(ConversionError, match="Cast"):
        NodeSequence(_graph((Node("Cast", "cast", ("b",), ("b2",), {"to": 1}),)))
