"""The typed card: read and written by one pair of functions, validated, and torch-free."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from model.card import CARD_FILE, EncoderCard, write_card
from tests.conftest import REPO_ROOT

def minimal(**fields) -> dict:
    return {
        "name": "tiny",
        "version": "0.1",
        "architecture": {"name": "compact_cnn"},
        "input": {"size": 8, "channels": "RGB", "mean": 0.0, "scale": 1.0, "range": "0..255"},
        "alignment": {"size": 8, "points": [[2, 2], [6, 2], [4, 4], [2, 6], [6, 6]]},
        "embedding_dim": 4,
        **fields,
    }


def test_a_single_input_may_be_written_as_one_entry_and_reads_as_a_list():
    card = EncoderCard.model_validate(minimal())
    assert len(card.input) == len(card.alignment) == 1 and card.template.size == 8
    assert card.detector == "mtcnn" and card.inference.precision == "float32"
    assert card.calibration_for(flip_tta=False) is None


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"embeding_dim": 4}, "embeding_dim"),
        ({"detector": "haar"}, "detector"),
        ({"input": [minimal()["input"]] * 2}, "alignment templates"),
        ({"inference": {"precision": "float16"}}, "precision"),
        ({"calibration": {"plain": {"default": "far_1e-3", "operating_points": {}}}}, "default operating point"),
        ({"calibration": {"flipped": {"default": "x", "operating_points": {}}}}, "flipped"),
    ],
)
def test_malformed_cards_are_refused(fields, text):
    with pytest.raises(ValidationError, match=text):
        EncoderCard.model_validate(minimal(**fields))


def test_updated_validates_and_write_card_keeps_the_folder(tmp_path):
    card = write_card(EncoderCard.model_validate(minimal()), tmp_path)
    assert card.folder == tmp_path
    evaluated = card.updated(evaluation={"lfw_view2": {"accuracy": 0.9}})
    assert write_card(evaluated).evaluation == {"lfw_view2": {"accuracy": 0.9}}
    assert json.loads((tmp_path / CARD_FILE).read_text())["evaluation"] == {"lfw_view2": {"accuracy": 0.9}}
    with pytest.raises(ValidationError):
        card.updated(detector="haar")


def test_the_card_imports_neither_torch_nor_the_faces_package():
    code = "import sys, model.card; print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('model.faces')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
