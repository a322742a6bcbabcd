"""Detectors built by name from the shipped weights."""

from __future__ import annotations

import numpy as np
import pytest

from model.faces.detectors import FallbackDetector, build_detector
from model.faces.mtcnn import MTCNN
from model.faces.yunet import YuNet
from model.types import DETECTOR_NAMES


def test_build_by_name():
    assert isinstance(build_detector("yunet"), YuNet)
    assert isinstance(build_detector("mtcnn", min_face_size=40), MTCNN)
    both = build_detector("yunet+mtcnn")
    assert isinstance(both, FallbackDetector)
    assert isinstance(both.primary, YuNet) and isinstance(both.fallback, MTCNN)


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_each_detector_rejects_arrays_that_are_not_uint8_rgb_and_answers_nothing_for_nothing(name):
    detector = build_detector(name)
    with pytest.raises(ValueError):
        detector.detect([np.zeros((50, 50), dtype=np.uint8)])
    with pytest.raises(ValueError):
        detector.detect([np.zeros((50, 50, 3), dtype=np.float32)])
    assert detector.detect([]) == []
