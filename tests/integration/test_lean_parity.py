"""The lean serving path against the torch reference on real LFW faces, for YuNet and for MTCNN:
the detectors' networks compiled by OpenVINO find torch's faces and landmarks; NumPy alignment
gives torch's grid_sample chips; and the encoders embed the lean path's chips as they embed the
reference path's (detection and alignment on torch, as the torch-carrying build ran): the float32
source of the default to 1e-4, the shipped int8 default within its own rounding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.card import load_card
from model.encoders import load_encoder
from model.faces.align import align_faces
from model.faces.detectors import build_detector
from model.images import load_image, to_array
from model.paths import DEFAULT_ENCODER_DIR, WEIGHTS_DIR
from tests.integration.reference import grid_sample_chips
from tests.integration.test_engine_parity import pair_images

pytestmark = pytest.mark.data
pytest.importorskip("torch")

LANDMARK_TOLERANCE_PX = 0.01
SCORE_TOLERANCE = 1e-4
CHIP_TOLERANCE = 0.01  # grey levels, of 0..255: the same sampling, at float32 positions (about 1e-5 pixel)
FLOAT32_TOLERANCE = 1e-4  # distance between unit embeddings; a decision's thresholds lie near 1
# int8 activations round: landmarks 1e-5 pixels apart move the default's embedding by about 0.015,
# the scale of its AVX2-against-AMX difference (test_engine_parity.py).
INT8_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def images(lfw_dir: Path) -> list[np.ndarray]:
    return [to_array(load_image(lfw_dir / "images" / name)) for name in pair_images(lfw_dir)]


@pytest.fixture(scope="module")
def card():
    return load_card(DEFAULT_ENCODER_DIR)


@pytest.fixture(scope="module")
def encoders(card) -> dict:
    """The shipped int8 default, and the float32 card it was quantized from (compiled from torch)."""
    source = load_card(WEIGHTS_DIR / "fused-dlib-sface-yunet")
    return {INT8_TOLERANCE: load_encoder(card, "int8", "openvino"),
            FLOAT32_TOLERANCE: load_encoder(source, "float32", "openvino")}


@pytest.mark.parametrize("detector", ["yunet", "mtcnn"])
def test_lean_faces_chips_and_embeddings_are_the_torch_reference_s(detector, images, card, encoders):
    lean_faces = build_detector(detector, engine="openvino").detect(images)
    torch_faces = build_detector(detector, engine="torch").detect(images)
    assert [len(faces) for faces in lean_faces] == [len(faces) for faces in torch_faces]
    assert all(lean_faces), "every LFW image here has a face"
    for ours, theirs in zip(lean_faces, torch_faces):
        for a, b in zip(ours, theirs):
            assert np.abs(np.subtract(a.box, b.box)).max() <= LANDMARK_TOLERANCE_PX
            assert np.abs(np.subtract(a.landmarks, b.landmarks)).max() <= LANDMARK_TOLERANCE_PX
            assert abs(a.score - b.score) <= SCORE_TOLERANCE

    lean_chips, reference_chips = [], []
    for template in card.alignment:
        lean_chips.append(np.concatenate([align_faces(image, faces[:1], template)
                                          for image, faces in zip(images, lean_faces)]))
        reference_chips.append(np.concatenate([grid_sample_chips(image, faces[:1], template)
                                               for image, faces in zip(images, torch_faces)]))
        same_faces = np.concatenate([align_faces(image, faces[:1], template)
                                     for image, faces in zip(images, torch_faces)])
        assert np.abs(same_faces - reference_chips[-1]).max() <= CHIP_TOLERANCE
        # Faces found a hundredth of a pixel apart: chips that differ by a fraction of a grey level.
        assert np.abs(lean_chips[-1] - reference_chips[-1]).mean() <= 0.05

    def unit(raw: np.ndarray) -> np.ndarray:
        return raw / np.linalg.norm(raw, axis=1, keepdims=True)

    for tolerance, encoder in encoders.items():
        distance = np.linalg.norm(unit(encoder(*lean_chips)) - unit(encoder(*reference_chips)), axis=1)
        assert distance.max() <= tolerance, (tolerance, distance.max())
