"""The shipped cards: each exactly what write_card writes, and the default's fields typed."""

from __future__ import annotations

import pytest

from model.card import CARD_FILE, load_card, write_card
from tests.conftest import WEIGHTS_DIR

SHIPPED = sorted(path.parent.name for path in WEIGHTS_DIR.glob(f"*/{CARD_FILE}"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_card_is_exactly_what_write_card_writes(name, tmp_path):
    """So every card on disk came out of (or round-trips through) the one writer."""
    card = load_card(WEIGHTS_DIR / name)
    write_card(card, tmp_path)
    assert (tmp_path / CARD_FILE).read_bytes() == (WEIGHTS_DIR / name / CARD_FILE).read_bytes()


def test_the_default_card_reads_as_typed_fields():
    card = load_card(WEIGHTS_DIR / "fused-dlib-sface-yunet")
    assert card.architecture.name == "fused" and [t.size for t in card.alignment] == [150, 112]
    assert card.detector == "yunet+mtcnn" and card.inference.flip_tta is True and card.precision == "bfloat16"
    flip = card.calibration_for(flip_tta=True)
    assert flip.default == "far_1e-3" and flip.operating_points["far_1e-3"].name == "far_1e-3"
    assert 0 < flip.operating_points["far_1e-3"].far < 0.01
    assert set(card.state_files()) == {"members.0.", "members.1."}
