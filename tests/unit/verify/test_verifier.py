"""The requests' rules (model.verify.verifier.Verifier) over hand-made networks: faces are given, and
a face's embedding is a unit vector at the angle its box's left edge names, so every distance is
known by hand (2 sin(delta / 2) between angles)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.card import EncoderCard
from model.errors import AllFacesNeedAnImage, IncompatibleEmbedding, InvalidEmbedding, MultipleFaces, NoFaceDetected
from model.images import Photo
from model.types import Face
from model.verify.decision import Decision
from model.types import EmbeddingModel
from model.verify.results import FaceEmbedding
from model.verify.verifier import Verifier

CARD = EncoderCard(
    name="hand-made",
    version="1",
    architecture={"name": "none"},
    input=[{"size": 4, "channels": "RGB", "range": "0..255", "mean": 0.0, "scale": 1.0}],
    alignment=[{"size": 4, "points": [[1, 1], [3, 1], [2, 2], [1, 3], [3, 3]]}],
    embedding_dim=2,
)
DECISION = Decision(threshold=0.5, operating_point=None, calibration=None)


def face(x1: float, side: float, y1: float = 10.0) -> Face:
    cx, cy = x1 + side / 2, y1 + side / 2
    return Face(box=(x1, y1, x1 + side, y1 + side), score=0.99, landmarks=((cx, cy),) * 5)


def at_angle(degrees: float) -> np.ndarray:
    return np.array([math.cos(math.radians(degrees)), math.sin(math.radians(degrees))], dtype=np.float32)


class HandMade(Verifier):
    """Detects the faces the image's first pixel's red value indexes in `scenes`; embeds a face at
    the angle of its box's left edge (in degrees)."""

    def __init__(self, scenes: list[list[Face]], **options):
        super().__init__(CARD, **options)
        self.scenes = scenes
        self.encoded: list[int] = []

    def detect(self, images, every_face=False):
        return [list(self.scenes[int(image[0, 0, 0])]) for image in images]

    def encode(self, views):
        self.encoded.append(len(views))
        return np.stack([at_angle(local.box[0]) for _, local in views]), {"align": 1.0, "embed": 2.0}, None


def scene(index: int, width: int = 1000, height: int = 400) -> Photo:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[0, 0, 0] = index
    return Photo.of(pixels)


def chord(degrees: float) -> float:
    return 2 * math.sin(math.radians(degrees) / 2)


def test_one_face_each_side_and_the_distance_by_hand():
    verifier = HandMade([[face(450, 100)], [face(480, 100)]])
    result = verifier.verify(scene(0), scene(1), DECISION)
    assert result.verdict.distance == pytest.approx(chord(30), abs=1e-6)  # 0.5176 > 0.5
    assert result.verdict.same is False and result.matches is None
    assert verifier.encoded == [2]  # both faces in one batch
    assert set(result.timings_ms) == {"detect", "align", "embed", "quality"}


def test_all_compares_with_every_face_best_first_and_keeps_the_largest():
    group = [face(10, 50), face(450, 120), face(600, 80), face(800, 60)]
    verifier = HandMade([[face(455, 100)], group])
    result = verifier.verify(scene(0), scene(1), DECISION, policy="all", max_faces=3)
    assert result.matches_in == 1 and len(result.matches) == 3  # the 50-pixel face is left out
    # The probe at 455 degrees (95); the faces at 90, 240 and 440 (80) degrees: 5, 145 and 15 away.
    assert [m.face.box[0] for m in result.matches] == [450, 800, 600]
    assert [m.verdict.distance for m in result.matches] == pytest.approx([chord(5), chord(15), chord(145)], abs=1e-6)
    assert [m.verdict.same for m in result.matches] == [True, True, False]
    assert result.verdict == result.matches[0].verdict and result.verdict.same
    assert result.faces[1].face is result.matches[0].face and result.faces[1].faces_detected == 4


def test_all_searches_the_first_image_when_the_second_is_an_embedding():
    verifier = HandMade([[face(100, 90), face(200, 90)]])
    given = FaceEmbedding(at_angle(200))
    result = verifier.verify(scene(0), given, DECISION, policy="all")
    assert result.matches_in == 0 and result.matches[0].face.box[0] == 200
    assert result.matches[0].verdict.distance == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(AllFacesNeedAnImage):
        verifier.verify(given, given, DECISION, policy="all")


def test_all_with_no_face_in_the_searched_image_names_it():
    verifier = HandMade([[face(100, 90)], []])
    with pytest.raises(NoFaceDetected, match="image2"):
        verifier.verify(scene(0), scene(1), DECISION, policy="all")


def test_two_embeddings_need_no_network():
    verifier = HandMade([])
    result = verifier.verify(FaceEmbedding(at_angle(0)), FaceEmbedding(at_angle(60)), DECISION)
    assert result.verdict.distance == pytest.approx(1.0, abs=1e-6) and verifier.encoded == []
    assert result.timings_ms == {"detect": 0.0, "align": 0.0, "embed": 0.0, "quality": 0.0}


def test_the_chosen_face_carries_the_runner_up_and_ambiguity():
    twins = [face(300, 100, 150), face(600, 100, 150)]  # the same size, equally far from the centre
    result = HandMade([twins], face_policy="subject").embed([scene(0)])[0][0]
    assert result.faces_detected == 2 and result.ambiguous and result.runner_up in twins
    with pytest.raises(MultipleFaces) as caught:
        HandMade([twins], face_policy="reject").embed([scene(0)], labels=["images[0]"])
    assert caught.value.input == "images[0]" and caught.value.message.startswith("images[0]: 2 faces")


SERVING = EmbeddingModel("hand-made", "1", "plain")


@pytest.mark.parametrize("made_by", [EmbeddingModel("other", "1", "plain"), EmbeddingModel("hand-made", "2", "plain"),
                                     EmbeddingModel("hand-made", "1", "flip")])
def test_an_embedding_of_another_model_is_incompatible(made_by):
    with pytest.raises(IncompatibleEmbedding, match="embedding1"):
        HandMade([]).accept_embedding([1.0, 0.0], made_by, "embedding1")


@pytest.mark.parametrize("values, what", [([1.0], "2"), ([1.0, 0.0, 0.0], "2"), ([math.nan, 1.0], "NaN"),
                                          ([math.inf, 0.0], "NaN"), ([0.6, 0.6], "length"), ([0.0, 0.0], "length")])
def test_an_embedding_that_is_not_one_of_the_models_is_invalid(values, what):
    with pytest.raises(InvalidEmbedding, match=what):
        HandMade([]).accept_embedding(values, SERVING, "embedding2")


def test_an_embedding_within_the_tolerance_is_accepted_and_renormalised():
    accepted = HandMade([]).accept_embedding([0.6, 0.8005], SERVING, "embedding1")  # length 1.0004
    assert np.linalg.norm(accepted.embedding) == pytest.approx(1.0, abs=1e-6) and accepted.face is None
    with pytest.raises(InvalidEmbedding):
        HandMade([]).accept_embedding([0.6, 0.802], SERVING, "embedding1")  # length 1.0016


class DecodedCoarsely(Photo):
    """A photo whose finer decode (for detection's full look) is scene 1."""

    def finer(self, side: int) -> Photo:
        return scene(1) if side == 640 else self


class LooksTwice(HandMade):
    detection_side = 640

    def detect(self, images, every_face=False):
        self.looks = [*getattr(self, "looks", []), every_face]
        return super().detect(images, every_face)

    def encode(self, views):
        self.aligned_from = [int(array[0, 0, 0]) for array, _ in views]
        return super().encode(views)


def test_a_photo_without_a_face_at_its_first_decode_is_decoded_again_and_aligned_from_that():
    verifier = LooksTwice([[], [face(450, 100)]])
    coarse = scene(0)
    (embedded,), _ = verifier.embed([DecodedCoarsely(coarse.pixels, coarse.size)])
    assert embedded.face.box == face(450, 100).box and verifier.aligned_from == [1]
    assert verifier.looks == [False, True]  # the finer decode straight at the full look
    with pytest.raises(NoFaceDetected):
        HandMade([[]]).embed([DecodedCoarsely(coarse.pixels, coarse.size)])  # no full look to decode for
