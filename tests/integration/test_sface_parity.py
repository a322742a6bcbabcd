"""The PyTorch SFace against embeddings computed by OpenCV's FaceRecognizerSF on the same chips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.card import load_card
from model.encoders import load_encoder

pytestmark = pytest.mark.data

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "sface-2021dec"


@pytest.fixture(scope="module")
def encoder() -> torch.nn.Module:
    return load_encoder(load_card(WEIGHTS))


@pytest.fixture(scope="module")
def vectors(data_dir: Path) -> tuple[torch.Tensor, np.ndarray]:
    folder = data_dir / "reference" / "sface_vectors"
    chips = np.load(folder / "chips.npy")  # uint8 (N, 112, 112, 3) RGB
    return torch.from_numpy(chips).permute(0, 3, 1, 2).float(), np.load(folder / "embeddings.npy")


def test_matches_opencv_embeddings(encoder, vectors):
    chips, expected = vectors
    with torch.inference_mode():
        embeddings = encoder(chips).numpy()
    assert embeddings.shape == expected.shape == (32, 128)
    norms = np.linalg.norm(expected, axis=1)
    cosine = (embeddings * expected).sum(axis=1) / (np.linalg.norm(embeddings, axis=1) * norms)
    assert cosine.min() >= 0.9999, f"worst cosine {cosine.min():.7f} (a faithful port gets ~1.0)"
    # OpenCV's raw vectors have norms of about 9-14: compare the error with each vector's norm.
    relative = np.abs(embeddings - expected).max(axis=1) / norms
    assert relative.max() <= 1e-5, f"max |diff| / norm {relative.max():.3g} (expect ~3e-7)"


def test_batch_of_one_agrees_with_full_batch(encoder, vectors):
    chips, _ = vectors
    with torch.inference_mode():
        batched = encoder(chips)
        single = torch.cat([encoder(chip[None]) for chip in chips])
    assert float((batched - single).abs().max()) <= 1e-4
