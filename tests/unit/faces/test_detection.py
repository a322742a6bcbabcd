"""The detectors' shared chores: input checks, working copies, mapping back to the image, and NMS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import model.faces.detection as detection
from model.faces.detection import check_images, face_in_image, nms, working_copy

RNG = np.random.default_rng(3)


def reference_nms(boxes, scores, threshold, groups, over_smaller):
    """Textbook greedy NMS, one box at a time."""
    extra = 1.0 if over_smaller else 0.0
    area = (boxes[:, 2] - boxes[:, 0] + extra) * (boxes[:, 3] - boxes[:, 1] + extra)
    remaining = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept = []
    while remaining:
        best, *remaining = remaining
        kept.append(best)
        survivors = []
        for j in remaining:
            w = min(boxes[best, 2], boxes[j, 2]) - max(boxes[best, 0], boxes[j, 0]) + extra
            h = min(boxes[best, 3], boxes[j, 3]) - max(boxes[best, 1], boxes[j, 1]) + extra
            inter = max(w, 0.0) * max(h, 0.0)
            union = min(area[best], area[j]) if over_smaller else area[best] + area[j] - inter
            if groups[best] != groups[j] or inter / union <= threshold:
                survivors.append(j)
        remaining = survivors
    return kept


def random_boxes(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    corner = RNG.uniform(0, 200, size=(n, 2))
    size = RNG.uniform(10, 60, size=(n, 1))
    boxes = np.hstack([corner, corner + size * RNG.uniform(0.8, 1.2, size=(n, 2))])
    scores = RNG.permutation(n) / n  # distinct, so the greedy order is unambiguous
    groups = RNG.integers(0, 3, size=n)
    return (torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores, dtype=torch.float32),
            torch.tensor(groups))


@pytest.mark.parametrize("over_smaller", [False, True])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("block", [detection.NMS_BLOCK, 16])
def test_nms_matches_textbook_greedy(monkeypatch, over_smaller, threshold, block):
    monkeypatch.setattr(detection, "NMS_BLOCK", block)
    boxes, scores, groups = random_boxes(300)
    kept = nms(boxes, scores, threshold, groups, over_smaller)
    expected = reference_nms(boxes.double().numpy(), scores.numpy(), threshold, groups.numpy(),
                             over_smaller)
    assert kept.tolist() == expected


def test_nms_of_nothing_is_nothing():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)


def test_only_uint8_rgb_arrays_are_detected_on():
    check_images([np.zeros((5, 4, 3), np.uint8)])
    for bad in (np.zeros((5, 4), np.uint8), np.zeros((5, 4, 3), np.float32), np.zeros((5, 4, 4), np.uint8)):
        with pytest.raises(ValueError, match="uint8 HxWx3"):
            check_images([bad])


def test_the_working_copy_is_the_image_up_to_max_side_then_its_area_downscale():
    image = RNG.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    assert working_copy(image, 400) is image
    small = working_copy(image, 100)
    assert small.shape == (75, 100, 3)
    # Box resampling by a whole factor of 4 is the mean of each 4x4 block, to Pillow's 8-bit rounding.
    assert abs(float(small[0, 0, 0]) - image[:4, :4, 0].mean()) <= 1


def test_faces_map_back_by_pixel_centres():
    image, working = np.zeros((200, 400, 3), np.uint8), np.zeros((50, 100, 3), np.uint8)
    face = face_in_image(np.array([[9.5, 9.5], [19.5, 29.5]]), np.full((5, 2), 1.5), 0.9, image, working)
    # (p + 0.5) * 4 - 0.5 on both axes
    assert face.box == (39.5, 39.5, 79.5, 119.5)
    assert face.landmarks == ((7.5, 7.5),) * 5 and face.score == 0.9
