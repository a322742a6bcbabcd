"""bench.encoder_speed counts a network's multiply-adds: checked against a count made by hand."""

from __future__ import annotations

import torch
from torch import nn

from bench.encoder_speed import multiply_adds


def test_convolutions_grouped_convolutions_and_linear_layers_are_counted():
    network = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # 4 x 5 x 5 outputs, each 3 x 3 x 3 = 27 products: 2,700
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4),  # 4 x 3 x 3 outputs, each 1 x 3 x 3: 324
        nn.ReLU(),  # not counted
        nn.Flatten(),
        nn.Linear(36, 2),  # 2 outputs, each 36 products: 72
    )
    assert multiply_adds(network, torch.zeros(1, 3, 5, 5)) == 2700 + 324 + 72
