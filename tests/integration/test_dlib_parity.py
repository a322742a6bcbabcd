"""The PyTorch dlib ResNet against descriptors computed by dlib itself on the same chips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.encoders.registry import build_encoder
from tests.conftest import WEIGHTS_DIR
from tests.integration.reference import EncoderComparison, batch_of_one_difference, compare_with_reference

pytestmark = pytest.mark.data

WEIGHTS = WEIGHTS_DIR / "dlib-resnet-v1" / "encoder.pt"


@pytest.fixture(scope="module")
def encoder() -> torch.nn.Module:
    model = build_encoder("dlib_resnet")
    model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    return model.eval()


@pytest.fixture(scope="module")
def compared(encoder, data_dir: Path) -> EncoderComparison:
    return compare_with_reference(encoder, data_dir, "dlib_vectors")  # 150x150 chips


def test_matches_dlib_descriptors(compared):
    embeddings, expected = compared.ours, compared.theirs
    assert embeddings.shape == expected.shape == (32, 128)
    worst = float(np.abs(embeddings - expected).max())
    assert worst <= 1e-4, f"max |diff| per component {worst:.3g} (a faithful port gets ~5e-7)"


def test_batch_of_one_agrees_with_full_batch(encoder, compared):
    assert batch_of_one_difference(encoder, compared.chips) <= 1e-5
