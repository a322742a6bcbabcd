"""`facever fuse`: a fused weights folder borrows its members' weights and loads like any encoder."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from model.card import STATE_FILE, load_card
from model.convert.fuse import fuse
from model.encoders import load_encoder, reference_encoder
from model.encoders.registry import ENCODERS, register_encoder

if "test_linear" not in ENCODERS:

    @register_encoder("test_linear")
    class TinyLinear(nn.Module):
        """Mean colour of the chip through a 3 -> 2 linear map: parameters to load, output to check."""

        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def forward(self, chips: torch.Tensor) -> torch.Tensor:
            return self.linear(chips.mean((2, 3)))


def make_member(folder, size: int, seed: int) -> None:
    torch.manual_seed(seed)
    folder.mkdir()
    torch.save(TinyLinear().state_dict(), folder / STATE_FILE)
    card = {
        "name": folder.name,
        "version": "1.0.0",
        "architecture": {"name": "test_linear", "params": {}},
        "input": {"size": size, "channels": "RGB", "range": "0..255", "mean": 0.0, "scale": 1.0},
        "alignment": {"size": size, "points": [[1, 1], [3, 1], [2, 2], [1, 3], [3, 3]]},
        "embedding_dim": 2,
        "licence": "MIT",
    }
    (folder / "model.json").write_text(json.dumps(card))


def test_fused_folder_borrows_member_weights(tmp_path):
    make_member(tmp_path / "a", size=4, seed=0)
    make_member(tmp_path / "b", size=6, seed=1)
    out = fuse([tmp_path / "a", tmp_path / "b"], [1.0, 0.5], "fused-ab", tmp_path / "fused-ab", flip_tta=True)

    assert not (out / STATE_FILE).exists()
    card = load_card(out)
    assert [t.size for t in card.alignment] == [4, 6]
    assert card.embedding_dim == 4
    assert set(card.state_files()) == {"members.0.", "members.1."}

    first, second = reference_encoder(load_card(tmp_path / "a")), reference_encoder(load_card(tmp_path / "b"))
    chips_a, chips_b = torch.rand(3, 3, 4, 4) * 255, torch.rand(3, 3, 6, 6) * 255
    with torch.inference_mode():
        expected = torch.cat(
            [nn.functional.normalize(first(chips_a), dim=-1), 0.5 * nn.functional.normalize(second(chips_b), dim=-1)],
            dim=-1,
        )
        assert torch.allclose(reference_encoder(card)(chips_a, chips_b), expected)
    # Inference combines the members as the torch reference does.
    assert np.allclose(load_encoder(card)(chips_a.numpy(), chips_b.numpy()), expected.numpy(), atol=1e-6)


@pytest.mark.parametrize("weights", [[1.0, 0.0], [1.0, -0.5], [1.0, float("nan")]])
def test_member_weights_must_be_positive_and_finite(tmp_path, weights):
    make_member(tmp_path / "a", size=4, seed=0)
    make_member(tmp_path / "b", size=6, seed=1)
    with pytest.raises(ValueError):
        fuse([tmp_path / "a", tmp_path / "b"], weights, "bad", tmp_path / "bad", flip_tta=False)


def test_a_fused_folder_cannot_be_a_member(tmp_path):
    make_member(tmp_path / "a", size=4, seed=0)
    make_member(tmp_path / "b", size=6, seed=1)
    fused = fuse([tmp_path / "a", tmp_path / "b"], [1.0, 1.0], "ab", tmp_path / "ab", flip_tta=False)
    with pytest.raises(ValueError):
        fuse([fused, tmp_path / "a"], [1.0, 1.0], "nested", tmp_path / "nested", flip_tta=False)


def test_fused_card_names_its_detector_and_precision(tmp_path):
    make_member(tmp_path / "a", size=4, seed=0)
    out = fuse([tmp_path / "a"], [1.0], "a-yunet", tmp_path / "a-yunet", flip_tta=True,
               detector="yunet+mtcnn", precision="bfloat16")
    card = load_card(out)
    assert card.detector == "yunet+mtcnn" and card.precision == "bfloat16"
    assert card.inference.flip_tta is True
    with pytest.raises(ValueError, match="detector"):
        fuse([tmp_path / "a"], [1.0], "bad", tmp_path / "bad", flip_tta=True, detector="haar")
    assert not (tmp_path / "bad").exists()
