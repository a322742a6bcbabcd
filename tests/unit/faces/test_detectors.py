"""Detectors by name, and the fallback that runs the second detector only where the first found nothing."""

import numpy as np
import pytest

from model.faces.detectors import DETECTORS, FallbackDetector
from model.types import DETECTOR_NAMES, Face, detector_parts

FACE = Face(box=(1.0, 1.0, 5.0, 5.0), score=0.9, landmarks=((2, 2), (4, 2), (3, 3), (2, 4), (4, 4)))


class Scripted:
    """Finds a face exactly in the images whose first pixel is non-zero; records what it saw."""

    def __init__(self, name: str, max_side: int = 640):
        self.seen: list[int] = []
        self.every_face: list[bool] = []
        self.name = name
        self.max_side = max_side
        self.first_side = 320

    @property
    def settings(self) -> dict:
        return {"name": self.name}

    def detect(self, images, every_face=False):
        self.seen.append(len(images))
        self.every_face.append(every_face)
        return [[FACE] if image[0, 0, 0] else [] for image in images]


def image(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


def test_fallback_runs_only_on_the_images_the_primary_missed():
    primary, fallback = Scripted("p"), Scripted("f", max_side=1280)
    detector = FallbackDetector(primary, fallback)
    assert (detector.max_side, detector.first_side) == (640, 320)  # the primary's looks: what images are decoded for
    found = detector.detect([image(1), image(0), image(0)])
    assert primary.seen == [3] and fallback.seen == [2]
    assert [len(faces) for faces in found] == [1, 0, 0]
    assert detector.settings == {"primary": {"name": "p"}, "fallback": {"name": "f"}}


def test_fallback_is_asked_for_every_face_when_the_primary_is():
    primary, fallback = Scripted("p"), Scripted("f")
    FallbackDetector(primary, fallback).detect([image(0)], every_face=True)
    assert primary.every_face == fallback.every_face == [True]


def test_fallback_is_not_called_when_every_image_has_a_face():
    primary, fallback = Scripted("p"), Scripted("f")
    FallbackDetector(primary, fallback).detect([image(1), image(2)])
    assert fallback.seen == []


@pytest.mark.parametrize("bad", ["haar", "yunet+", "yunet+mtcnn+yunet", ""])
def test_unknown_names_are_refused(bad):
    with pytest.raises(ValueError, match="detector"):
        detector_parts(bad)


def test_every_detector_name_has_a_detector():
    assert set(DETECTORS) == set(DETECTOR_NAMES)
