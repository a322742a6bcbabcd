"""The compact from-scratch encoder: registered, sized for CPU training, its own normalisation."""

import pytest
import torch

from model.encoders.registry import ENCODERS, build_encoder
from model.encoders.compact_cnn import CompactCNN


def test_registered_and_sized_for_cpu_training():
    encoder = build_encoder("compact_cnn")
    assert ENCODERS["compact_cnn"] is CompactCNN
    assert 500_000 < sum(p.numel() for p in encoder.parameters()) < 1_000_000
    assert encoder.eval()(torch.rand(2, 3, 64, 64) * 255).shape == (2, 128)


def test_other_sizes_and_widths():
    encoder = CompactCNN(embedding_dim=16, input_size=32, widths=(8, 16, 32)).eval()
    assert encoder(torch.rand(1, 3, 32, 32) * 255).shape == (1, 16)
    with pytest.raises(ValueError):
        CompactCNN(input_size=60)  # not divisible by 2 ** 3


def test_normalises_its_own_input():
    # Mid-grey chips (127.5) become all-zero input, so the output is the network's response to zero.
    encoder = CompactCNN(embedding_dim=8, input_size=16, widths=(4, 8)).eval()
    grey = encoder(torch.full((1, 3, 16, 16), 127.5))
    with torch.no_grad():
        zero = encoder.embedding(encoder.pool(encoder.features(torch.zeros(1, 3, 16, 16))).flatten(1))
    assert torch.allclose(grey, zero)
