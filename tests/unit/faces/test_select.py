"""Face selection policies on hand-made detections."""

from __future__ import annotations

import pytest

from model.errors import MultipleFaces, NoFaceDetected
from model.faces.select import SELECTION_POLICIES, select_face
from model.types import Face


def face(x1: float, y1: float, x2: float, y2: float, score: float = 0.99) -> Face:
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return Face(box=(x1, y1, x2, y2), score=score, landmarks=((cx, cy),) * 5)


IMAGE_SIZE = (1000, 800)  # width, height
CENTRED_SMALL = face(450, 350, 550, 450)  # 100x100 at the centre
BIG_AT_EDGE = face(0, 0, 200, 200)  # 200x200, centre (100, 100): far from (500, 400)
MEDIUM_NEAR_CENTRE = face(560, 340, 680, 460)  # 120x120, centre 120 px right of the image centre


@pytest.mark.parametrize("policy", SELECTION_POLICIES)
def test_no_face_raises(policy):
    with pytest.raises(NoFaceDetected):
        select_face([], policy, IMAGE_SIZE)


@pytest.mark.parametrize("policy", SELECTION_POLICIES)
def test_a_single_face_is_selected_by_every_policy(policy):
    assert select_face([BIG_AT_EDGE], policy, IMAGE_SIZE) is BIG_AT_EDGE


def test_largest_is_the_default_and_ignores_position():
    assert select_face([CENTRED_SMALL, BIG_AT_EDGE, MEDIUM_NEAR_CENTRE]) is BIG_AT_EDGE


def test_largest_breaks_ties_by_score():
    weaker, stronger = face(0, 0, 100, 100, 0.8), face(300, 300, 400, 400, 0.95)
    assert select_face([weaker, stronger], "largest") is stronger


def test_central_prefers_a_centred_face_over_a_larger_one_at_the_edge():
    # BIG_AT_EDGE: 40000 - 2 * (400^2 + 300^2) < 0; CENTRED_SMALL: 10000 - 0.
    assert select_face([BIG_AT_EDGE, CENTRED_SMALL], "central", IMAGE_SIZE) is CENTRED_SMALL


def test_central_still_prefers_a_clearly_larger_face_slightly_off_centre():
    # MEDIUM_NEAR_CENTRE: 14400 - 2 * 120^2 = -14400 < CENTRED_SMALL's 10000, so the centred wins;
    # a 200x200 face at the same offset: 40000 - 28800 = 11200 > 10000 wins.
    bigger_off_centre = face(520, 300, 720, 500)
    assert select_face([MEDIUM_NEAR_CENTRE, CENTRED_SMALL], "central", IMAGE_SIZE) is CENTRED_SMALL
    chosen = select_face([CENTRED_SMALL, bigger_off_centre], "central", IMAGE_SIZE)
    assert chosen is bigger_off_centre


def test_central_needs_the_image_size():
    with pytest.raises(ValueError):
        select_face([CENTRED_SMALL, BIG_AT_EDGE], "central")


def test_reject_raises_on_more_than_one_face():
    with pytest.raises(MultipleFaces) as caught:
        select_face([CENTRED_SMALL, BIG_AT_EDGE], "reject", IMAGE_SIZE)
    assert caught.value.code == "multiple_faces"
    assert "2 faces" in caught.value.message


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError):
        select_face([CENTRED_SMALL], "first")
