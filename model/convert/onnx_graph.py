"""Reading an ONNX graph at conversion time, shared by the SFace and YuNet converters.

Only `load_graph` needs the `onnx` package (the `convert` extra); the rest is plain Python and
numpy, so the service never imports onnx. Both converters walk their graph with a subclass of
ComputeNodes, which folds the constant nodes (the int8 weights' dequantisation) up front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from model.convert.base import ConversionError, expect


def dequantize_blocked(
    quantized: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int, block_size: int
) -> np.ndarray:
    """ONNX DequantizeLinear with blocked quantisation: (q - zero_point) * scale, where each run
    of `block_size` elements along `axis` shares one scale and zero point (the last run may be
    shorter). Computed in float32 as the ONNX reference does; q - zero_point is exact there."""
    if block_size < 1:
        raise ConversionError(f"only blocked quantisation is supported (block_size {block_size})")
    axis %= quantized.ndim
    length = quantized.shape[axis]
    blocks = -(-length // block_size)
    expected = (*quantized.shape[:axis], blocks, *quantized.shape[axis + 1 :])
    expect(scale.shape, expected, "shape of the blocked scales")
    expect(zero_point.shape, expected, "shape of the blocked zero points")
    expect(zero_point.dtype, quantized.dtype, "zero point type")

    def per_element(values: np.ndarray) -> np.ndarray:
        spread = np.repeat(values.astype(np.float32), block_size, axis=axis)
        return spread.take(np.arange(length), axis=axis)

    return (quantized.astype(np.float32) - per_element(zero_point)) * per_element(scale)


@dataclass(frozen=True)
class Node:
    """One graph node, its attributes decoded to Python values (tensors to arrays)."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]


@dataclass(frozen=True)
class Graph:
    """An ONNX graph as plain Python: everything after loading needs no onnx package."""

    input: str
    outputs: tuple[str, ...]
    initializers: dict[str, np.ndarray]
    nodes: tuple[Node, ...]
    # Declared inputs that no initializer gives a value to and no node reads (SFace's graph keeps
    # the float weights' names from before quantisation there).
    unread_inputs: tuple[str, ...] = ()


def load_graph(data: bytes) -> Graph:
    """Parse an ONNX model with the `onnx` package (imported here: conversion time only)."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ConversionError(
            "reading ONNX needs the onnx package: pip install -e '.[convert]'"
        ) from None

    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as error:  # onnx raises several unrelated types for an unreadable model
        raise ConversionError(f"not a valid ONNX model: {error}") from error
    graph = model.graph

    def attribute(proto: onnx.AttributeProto) -> Any:
        value = helper.get_attribute_value(proto)
        return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value

    nodes = tuple(
        Node(
            node.op_type,
            node.name,
            tuple(node.input),
            tuple(node.output),
            {proto.name: attribute(proto) for proto in node.attribute},
        )
        for node in graph.node
    )
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    # Declared inputs that initializers give values to are not data; see Graph.unread_inputs.
    read = {name for node in nodes for name in node.inputs}
    declared = [i.name for i in graph.input if i.name not in initializers]
    inputs = [name for name in declared if name in read]
    expect(len(inputs), 1, "number of data inputs")
    unread = tuple(name for name in declared if name not in read)
    return Graph(inputs[0], tuple(o.name for o in graph.output), initializers, nodes, unread)


class ComputeNodes:
    """A graph's nodes split in two: those whose inputs are all constant are evaluated up front
    (by `evaluate_constant`, each converter's own), so each remaining compute node comes with its
    weights as arrays; `constant` reads one and remembers it was read."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.values = dict(graph.initializers)
        self.read: set[str] = set()
        self.compute: list[Node] = []
        for node in graph.nodes:  # ONNX requires topological order
            if all(name in self.values for name in node.inputs):
                expect(len(node.outputs), 1, f"outputs of {node.name!r}")
                self.values[node.outputs[0]] = self.evaluate_constant(node)
            else:
                self.compute.append(node)
        self.position = 0

    def evaluate_constant(self, node: Node) -> np.ndarray:
        raise NotImplementedError

    def constant(self, name: str) -> np.ndarray:
        if name not in self.values:
            raise ConversionError(f"{name!r} is not a constant")
        self.read.add(name)
        return self.values[name]

    def check_all_taken(self) -> None:
        """Every compute node was taken and every initializer read."""
        expect(len(self.compute) - self.position, 0, "compute nodes left after the last layer")
        for name in sorted(set(self.graph.initializers) - self.read):
            # A weight's unused target shape (no Reshape needed) is the only thing allowed.
            target = self.values.get(name.removesuffix("_shape") + "_dequantized")
            if not name.endswith("_shape") or target is None:
                raise ConversionError(f"initializer {name!r} is never read")
            expect(tuple(self.values[name].tolist()), target.shape, f"unread shape {name!r}")


def conv_attributes(conv: nn.Conv2d) -> dict[str, Any]:
    """The ONNX Conv attributes equivalent to a (symmetrically padded) nn.Conv2d."""
    return {
        "dilations": list(conv.dilation),
        "group": conv.groups,
        "kernel_shape": list(conv.kernel_size),
        "pads": list(conv.padding) * 2,
        "strides": list(conv.stride),
    }
