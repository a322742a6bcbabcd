"""The PyTorch dlib ResNet against descriptors computed by dlib itself on the same chips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.encoders import build_encoder

pytestmark = pytest.mark.data

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "dlib-resnet-v1" / "encoder.pt"


@pytest.fixture(scope="module")
def encoder() -> torch.nn.Module:
    model = build_encoder("dlib_resnet")
    model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    return model.eval()


@pytest.fixture(scope="module")
def vectors(data_dir: Path) -> tuple[torch.Tensor, np.ndarray]:
    folder = data_dir / "reference" / "dlib_vectors"
    chips = np.load(folder / "chips.npy")  # uint8 (N, 150, 150, 3) RGB
    return torch.from_numpy(chips).permute(0, 3, 1, 2).float(), np.load(folder / "embeddings.npy")


def test_matches_dlib_descriptors(encoder, vectors):
    chips, expected = vectors
    with torch.inference_mode():
        embeddings = encoder(chips).numpy()
    assert embeddings.shape == expected.shape == (32, 128)
    worst = float(np.abs(embeddings - expected).max())
    assert worst <= 1e-4, f"max |diff| per component {worst:.3g} (a faithful port gets ~5e-7)"


def test_batch_of_one_agrees_with_full_batch(encoder, vectors):
    chips, _ = vectors
    with torch.inference_mode():
        batched = encoder(chips)
        single = torch.cat([encoder(chip[None]) for chip in chips])
    assert float((batched - single).abs().max()) <= 1e-5
