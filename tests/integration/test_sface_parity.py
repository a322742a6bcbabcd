"""The PyTorch SFace against embeddings computed by OpenCV's FaceRecognizerSF on the same chips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.card import load_card
from model.encoders import reference_encoder
from tests.conftest import WEIGHTS_DIR
from tests.integration.reference import EncoderComparison, batch_of_one_difference, compare_with_reference

pytestmark = pytest.mark.data

WEIGHTS = WEIGHTS_DIR / "sface-2021dec"


@pytest.fixture(scope="module")
def encoder() -> torch.nn.Module:
    return reference_encoder(load_card(WEIGHTS))


@pytest.fixture(scope="module")
def compared(encoder, data_dir: Path) -> EncoderComparison:
    return compare_with_reference(encoder, data_dir, "sface_vectors")  # 112x112 chips


def test_matches_opencv_embeddings(compared):
    embeddings, expected = compared.ours, compared.theirs
    assert embeddings.shape == expected.shape == (32, 128)
    norms = np.linalg.norm(expected, axis=1)
    cosine = (embeddings * expected).sum(axis=1) / (np.linalg.norm(embeddings, axis=1) * norms)
    assert cosine.min() >= 0.9999, f"worst cosine {cosine.min():.7f} (a faithful port gets ~1.0)"
    # OpenCV's raw vectors have norms of about 9-14: compare the error with each vector's norm.
    relative = np.abs(embeddings - expected).max(axis=1) / norms
    assert relative.max() <= 1e-5, f"max |diff| / norm {relative.max():.3g} (expect ~3e-7)"


def test_batch_of_one_agrees_with_full_batch(encoder, compared):
    assert batch_of_one_difference(encoder, compared.chips) <= 1e-4
