"""The fused encoder: weighted concatenation of its members' normalised embeddings."""

import pytest
import torch
from torch import nn

from model.encoders.fused import FusedEncoder
from model.encoders.registry import ENCODERS, register_encoder


@pytest.fixture(scope="module", autouse=True)
def constant_encoder():
    """A member whose embedding is its `value` times the first pixel, so results are checkable."""
    if "test_constant" not in ENCODERS:

        @register_encoder("test_constant")
        class Constant(nn.Module):
            def __init__(self, value: list[float]):
                super().__init__()
                self.value = torch.tensor(value)

            def forward(self, chips: torch.Tensor) -> torch.Tensor:
                return chips[:, 0, 0, :1] * self.value


def test_members_see_their_own_chips_and_are_weighted():
    fused = FusedEncoder(
        [
            {"architecture": "test_constant", "params": {"value": [3.0, 4.0]}, "weight": 1.0},
            {"architecture": "test_constant", "params": {"value": [0.0, 2.0, 0.0]}, "weight": 0.5},
        ]
    )
    first, second = torch.ones(2, 3, 4, 4), torch.full((2, 3, 6, 6), 7.0)
    out = fused(first, second)
    assert out.shape == (2, 5)
    assert out[0].tolist() == pytest.approx([0.6, 0.8, 0.0, 0.5, 0.0])


def test_wrong_number_of_chip_batches_is_refused():
    fused = FusedEncoder([{"architecture": "test_constant", "params": {"value": [1.0]}, "weight": 1.0}])
    with pytest.raises(ValueError):
        fused(torch.ones(1, 3, 2, 2), torch.ones(1, 3, 2, 2))
