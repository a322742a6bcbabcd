"""The one distance, against hand-computed values, for NumPy arrays and torch tensors alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.distance import distance_matrix, pair_distances

X = [[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]]
Y = [[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]]


@pytest.mark.parametrize("array", [np.array, torch.tensor])
def test_pair_distances_row_by_row(array):
    assert np.allclose(np.asarray(pair_distances(array(X), array(Y))), [5.0, 5.0, 0.0])


@pytest.mark.parametrize("array", [np.array, torch.tensor])
def test_distance_matrix_of_all_rows(array):
    expected = [[5.0, 0.0, 2**0.5], [0.0, 5.0, 13**0.5], [13**0.5, 2**0.5, 0.0]]
    assert np.allclose(np.asarray(distance_matrix(array(X), array(Y))), expected)
    assert np.allclose(np.asarray(distance_matrix(array(X))).diagonal(), 0.0)


def test_identical_rows_are_at_zero_and_keep_a_finite_gradient():
    x = torch.tensor([[0.6, 0.8]], requires_grad=True)
    distance = pair_distances(x, x.detach().clone())
    assert float(distance.detach()) == pytest.approx(1e-6)  # held at the floor where it is differentiable
    distance.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert float(pair_distances(np.array([[0.6, 0.8]]), np.array([[0.6, 0.8]]))[0]) == 0.0
