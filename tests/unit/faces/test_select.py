"""Face selection policies on hand-made detections."""

from __future__ import annotations

import pytest

from model.errors import MultipleFaces, NoFaceDetected
from model.faces.select import AMBIGUITY_MARGIN, SUBJECT, FaceChoice, SubjectPolicyWeights, choose_face, select_face
from model.types import SELECTION_POLICIES, Face


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


def test_largest_ignores_position():
    assert select_face([CENTRED_SMALL, BIG_AT_EDGE, MEDIUM_NEAR_CENTRE], "largest") is BIG_AT_EDGE


# The subject score by hand, with h = half the diagonal of 1000x800 = 640.3124 and log(0.99) = -0.01005:
# CENTRED_SMALL      log(10000) - 4 * 0 - 0.01005 = 9.20029
# BIG_AT_EDGE        log(40000) - 4 * (500 / h)^2 - 0.01005 = 10.59663 - 2.43902 - 0.01005 = 8.14756
# MEDIUM_NEAR_CENTRE log(14400) - 4 * (120 / h)^2 - 0.01005 = 9.57498 - 0.14049 - 0.01005 = 9.42444
@pytest.mark.parametrize(
    "chosen, expected", [(CENTRED_SMALL, 9.20029), (BIG_AT_EDGE, 8.14756), (MEDIUM_NEAR_CENTRE, 9.42444)]
)
def test_subject_score_by_hand(chosen, expected):
    assert SUBJECT.score(chosen, IMAGE_SIZE) == pytest.approx(expected, abs=1e-4)


def test_subject_is_the_default_and_prefers_a_centred_face_over_a_larger_one_at_the_edge():
    choice = choose_face([BIG_AT_EDGE, CENTRED_SMALL], image_size=IMAGE_SIZE)
    assert choice.face is CENTRED_SMALL and choice.runner_up is BIG_AT_EDGE
    assert not choice.ambiguous  # 9.20029 - 8.14756 = 1.05 >= AMBIGUITY_MARGIN


def test_close_faces_are_reported_as_ambiguous_with_the_runner_up():
    # 9.42444 - 9.20029 = 0.224 < AMBIGUITY_MARGIN (0.4)
    choice = choose_face([CENTRED_SMALL, MEDIUM_NEAR_CENTRE], "subject", IMAGE_SIZE)
    assert choice.face is MEDIUM_NEAR_CENTRE and choice.runner_up is CENTRED_SMALL and choice.ambiguous
    assert AMBIGUITY_MARGIN == 0.4


def test_the_runner_up_is_the_subject_rules_even_under_another_policy():
    choice = choose_face([CENTRED_SMALL, BIG_AT_EDGE, MEDIUM_NEAR_CENTRE], "largest", IMAGE_SIZE)
    assert choice.face is BIG_AT_EDGE and choice.runner_up is MEDIUM_NEAR_CENTRE
    # BIG_AT_EDGE scores 8.14756 under the subject rule, below the runner-up: ambiguous indeed.
    assert choice.ambiguous


def test_a_single_face_has_no_runner_up():
    assert choose_face([BIG_AT_EDGE], "subject", IMAGE_SIZE) == FaceChoice(BIG_AT_EDGE, None, False)


def test_subject_does_not_depend_on_the_resolution():
    def scaled(f: Face, k: float) -> Face:
        return Face(box=tuple(v * k for v in f.box), score=f.score, landmarks=tuple((x * k, y * k) for x, y in f.landmarks))

    faces = [CENTRED_SMALL, BIG_AT_EDGE, MEDIUM_NEAR_CENTRE]
    big = [scaled(f, 3.0) for f in faces]
    margins = [SUBJECT.score(f, IMAGE_SIZE) - SUBJECT.score(CENTRED_SMALL, IMAGE_SIZE) for f in faces]
    big_margins = [SUBJECT.score(f, (3000, 2400)) - SUBJECT.score(big[0], (3000, 2400)) for f in big]
    assert big_margins == pytest.approx(margins)
    assert choose_face(big, "subject", (3000, 2400)).face is big[2]


def test_subject_weighs_detection_confidence():
    # Two equal faces equally far from the centre: the one detected with 0.5 loses log(0.99 / 0.5) = 0.683.
    left, right = face(300, 350, 400, 450, 0.5), face(600, 350, 700, 450, 0.99)
    assert select_face([left, right], "subject", IMAGE_SIZE) is right
    no_confidence = SubjectPolicyWeights(centre_weight=4.0, confidence_weight=0.0)
    assert no_confidence.score(left, IMAGE_SIZE) == pytest.approx(no_confidence.score(right, IMAGE_SIZE))


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


@pytest.mark.parametrize("policy", ["central", "subject"])
def test_central_and_subject_need_the_image_size(policy):
    with pytest.raises(ValueError):
        select_face([CENTRED_SMALL, BIG_AT_EDGE], policy)


def test_reject_raises_on_more_than_one_face():
    with pytest.raises(MultipleFaces) as caught:
        select_face([CENTRED_SMALL, BIG_AT_EDGE], "reject", IMAGE_SIZE)
    assert caught.value.message == "2 faces were detected"


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError):
        select_face([CENTRED_SMALL], "first")


def test_iou_by_hand():
    a, b = face(0, 0, 100, 100), face(50, 0, 150, 100)  # overlap 50x100 = 5000; union 15000
    assert a.iou(b) == pytest.approx(1 / 3) and a.iou(a) == 1.0 and a.iou(face(200, 200, 300, 300)) == 0.0
