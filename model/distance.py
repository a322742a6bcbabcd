"""The one distance: Euclidean, between embeddings, written once for NumPy arrays and torch tensors.

The service compares L2-normalised embeddings (0 = identical, 2 = opposite): the distance a client
computes from two /embed vectors is the one /verify reports, evaluation and calibration score, and
the losses and miners train. Only array operators are used, so the same lines serve both libraries
and this module imports neither.
"""

from __future__ import annotations

from typing import TypeVar

Array = TypeVar("Array")  # a numpy.ndarray or a torch.Tensor

# sqrt's gradient is infinite at 0 (a training batch may hold one image twice): below this squared
# distance a differentiable input is held at it, which changes no distance above 1e-6.
_GRADIENT_FLOOR = 1e-12


def pair_distances(x: Array, y: Array) -> Array:
    """Row-wise distances between x[..., i, :] and y[..., i, :] (the last axis is the embedding)."""
    squared = ((x - y) ** 2).sum(-1)
    if getattr(squared, "requires_grad", False):
        squared = squared.clip(min=_GRADIENT_FLOOR)
    return squared**0.5


def distance_matrix(x: Array, y: Array | None = None) -> Array:
    """All distances between the rows of x (N, D) and of y (M, D; default x): (N, M), from one
    matrix product, so millions of pairs cost one Gram matrix. Its rounding is that of the squared
    norms (about 1e-7 of them in float32), so use float64 where small distances matter, or
    pair_distances(x[:, None], y[None]) where N x M x D fits in memory."""
    y = x if y is None else y
    squared = (x * x).sum(-1)[:, None] + (y * y).sum(-1)[None, :] - 2 * (x @ y.T)
    return squared.clip(min=0) ** 0.5
