"""`facever quantize --member i`: one member of a fused card, alone, as a card of its own."""

import numpy as np
import pytest
import torch

from model.card import load_card
from model.convert.fuse import fuse
from model.convert.quantize import member_alone
from model.encoders import reference_encoder
from tests.unit.convert.test_fuse import make_member


@pytest.fixture
def fused(tmp_path):
    make_member(tmp_path / "a", size=4, seed=0)
    make_member(tmp_path / "b", size=6, seed=1)
    return load_card(fuse([tmp_path / "a", tmp_path / "b"], [1.0, 0.5], "ab", tmp_path / "ab", flip_tta=False,
                          detector="yunet+mtcnn"))


def test_a_member_alone_has_its_own_network_template_and_weights(fused, tmp_path):
    alone = member_alone(fused, 1)
    member = load_card(tmp_path / "b")
    assert alone.name == "b" and alone.architecture == member.architecture
    assert alone.alignment == [fused.alignment[1]] and alone.input == [fused.input[1]]
    assert alone.embedding_dim == member.embedding_dim and alone.detector == "yunet+mtcnn"
    assert alone.state_files() == {"": (tmp_path / "b" / "encoder.pt").resolve()}
    assert alone.provenance["member_of"] == "ab" and alone.provenance["member_index"] == 1
    chips = torch.rand(2, 3, 6, 6) * 255
    with torch.inference_mode():
        assert np.allclose(reference_encoder(alone)(chips).numpy(), reference_encoder(member)(chips).numpy())


def test_only_a_fused_card_s_members_can_be_taken_alone(fused, tmp_path):
    with pytest.raises(ValueError, match="2 members"):
        member_alone(fused, 2)
    with pytest.raises(ValueError, match="not a fused card"):
        member_alone(load_card(tmp_path / "a"), 0)
