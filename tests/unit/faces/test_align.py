"""Similarity transform fitting, templates and the chip warp."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from model.faces import align
from model.faces.align import align_faces, chips_to_uint8, similarity_transform
from model.types import AlignmentTemplate, Face

TEMPLATE = AlignmentTemplate(
    size=112,
    points=((38.3, 51.7), (73.5, 51.5), (56.0, 71.7), (41.5, 92.4), (70.7, 92.2)),
)
RNG = np.random.default_rng(7)


def similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:, :2].T + transform[:, 2]


def face_with_landmarks(points) -> Face:
    return Face(box=(0.0, 0.0, 1.0, 1.0), score=1.0, landmarks=tuple(map(tuple, points)))


def test_recovers_a_known_rotation_scale_and_translation():
    src = RNG.uniform(0, 200, size=(5, 2))
    truth = similarity(angle=0.4, scale=1.7, tx=-12.5, ty=33.0)
    np.testing.assert_allclose(similarity_transform(src, apply(truth, src)), truth, atol=1e-10)


def test_identity_for_identical_point_sets():
    points = np.array(TEMPLATE.points)
    np.testing.assert_allclose(similarity_transform(points, points), np.eye(2, 3), atol=1e-12)


def test_zero_weight_ignores_an_outlier():
    src = RNG.uniform(0, 200, size=(5, 2))
    truth = similarity(angle=-0.3, scale=0.8, tx=5.0, ty=-7.0)
    dst = apply(truth, src)
    dst[4] += (40.0, -25.0)
    fitted = similarity_transform(src, dst, weights=[1, 1, 1, 1, 0])
    np.testing.assert_allclose(fitted, truth, atol=1e-10)
    assert not np.allclose(similarity_transform(src, dst), truth, atol=1e-3)


def test_larger_weight_pulls_the_fit_towards_that_point():
    src = RNG.uniform(0, 200, size=(5, 2))
    dst = apply(similarity(0.1, 1.2, 3.0, 4.0), src) + RNG.normal(0, 5, size=(5, 2))
    error = lambda t: np.linalg.norm(apply(t, src)[0] - dst[0])  # noqa: E731
    heavy_first = similarity_transform(src, dst, weights=[20, 1, 1, 1, 1])
    assert error(heavy_first) < error(similarity_transform(src, dst))


def test_never_reflects():
    src = RNG.uniform(0, 200, size=(5, 2))
    mirrored = src * (-1.0, 1.0)
    fitted = similarity_transform(src, mirrored)
    assert np.linalg.det(fitted[:, :2]) > 0


def test_rejects_degenerate_input():
    with pytest.raises(ValueError):
        similarity_transform([[1, 1]] * 5, TEMPLATE.points)
    with pytest.raises(ValueError):
        similarity_transform(TEMPLATE.points, TEMPLATE.points, weights=[0] * 5)
    with pytest.raises(ValueError):
        similarity_transform(TEMPLATE.points, TEMPLATE.points[:4])


def test_template_round_trips_through_json():
    weighted = AlignmentTemplate(size=150, points=TEMPLATE.points, weights=(2, 2, 1, 0.5, 0.5))
    data = json.loads(json.dumps(weighted.model_dump(mode="json", by_alias=True, exclude_none=True)))
    assert data == {
        "size": 150,
        "points": [list(point) for point in TEMPLATE.points],
        "weights": [2.0, 2.0, 1.0, 0.5, 0.5],
    }
    assert AlignmentTemplate.model_validate(data) == weighted
    assert AlignmentTemplate.model_validate({"size": 112, "points": data["points"]}) == TEMPLATE
    named = AlignmentTemplate.model_validate({**data, "template": "mtcnn5-dlib150", "note": "why"})
    assert named.name == "mtcnn5-dlib150" and named.model_dump(by_alias=True)["template"] == "mtcnn5-dlib150"


@pytest.mark.parametrize(
    "bad",
    [
        {"size": 0, "points": TEMPLATE.points},
        {"size": 112, "points": TEMPLATE.points[:4]},
        {"size": 112, "points": TEMPLATE.points, "weights": (1, 0, 0, 0, 0)},
        {"size": 112, "points": TEMPLATE.points, "weights": (1, 1, 1, 1, -1)},
        {"size": 112, "points": ((50.0, 50.0),) * 5},
    ],
)
def test_template_validation(bad):
    with pytest.raises(ValueError):
        AlignmentTemplate(**bad)


def random_image(height=90, width=120) -> np.ndarray:
    return RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


# Positions reach the compiled sampler in float32, GridSample's [-1, 1] units (about 1e-5 pixel):
# whole-pixel positions come back to within this of the pixel itself.
EXACT = 0.01  # grey levels


def test_identity_warp_reproduces_the_pixels():
    image = random_image(112, 112)
    chips = align_faces(image, [face_with_landmarks(TEMPLATE.points)], TEMPLATE)
    assert chips.shape == (1, 3, 112, 112)
    np.testing.assert_allclose(chips[0].transpose(1, 2, 0), image.astype(np.float32), rtol=0, atol=EXACT)


def test_integer_translation_crops_exactly_and_pads_with_black():
    image = random_image()
    dx, dy = 30, -10  # chip pixel (u, v) shows image pixel (u + 30, v - 10)
    landmarks = np.array(TEMPLATE.points) + (dx, dy)
    chip = chips_to_uint8(align_faces(image, [face_with_landmarks(landmarks)], TEMPLATE))[0]
    assert chip.dtype == np.uint8 and chip.shape == (112, 112, 3)
    assert np.array_equal(chip[10:100, 0:90], image[0:90, 30:120])
    assert not chip[:10].any() and not chip[:, 90:].any()


def test_half_pixel_shift_averages_neighbours_and_faces_are_batched():
    image = random_image()
    shifted = np.array(TEMPLATE.points) + (10.5, 0)
    chips = align_faces(
        image, [face_with_landmarks(shifted), face_with_landmarks(TEMPLATE.points)], TEMPLATE
    )
    assert chips.shape == (2, 3, 112, 112)
    expected = (image[:, 10:119].astype(np.float32) + image[:, 11:120]) / 2
    np.testing.assert_allclose(chips[0, :, :90, :109].transpose(1, 2, 0), expected[:, :109], atol=EXACT)
    np.testing.assert_allclose(chips[1, :, :90, :112].transpose(1, 2, 0), image[:, :112], rtol=0, atol=EXACT)


def test_rotation_and_scale_follow_the_landmarks():
    # Landmarks at 1.5 times the template's size and rotated by 90 degrees: chip pixel (u, v) must
    # sample image position R(90) * 1.5 * (u, v) + t.
    truth = similarity(math.pi / 2, 1.5, 200.0, 10.0)  # chip -> image
    landmarks = apply(truth, np.array(TEMPLATE.points))
    image = random_image(300, 260)
    chip = align_faces(image, [face_with_landmarks(landmarks)], TEMPLATE)[0]
    u, v = 20, 30
    x, y = apply(truth, np.array([[u, v]]))[0]
    assert np.allclose(chip[:, v, u], image[round(y), round(x)], atol=1e-3)


def test_a_face_many_times_the_chip_scale_is_box_averaged_first():
    # Landmarks at 4 times the template's scale: each chip pixel covers a 4x4 block of the image,
    # and sees that block's mean rather than one of its pixels (no aliasing), rounded to 8 bits.
    truth = similarity(0.0, 4.0, 0.0, 0.0)  # chip pixel (u, v) -> image (4u + 1.5, 4v + 1.5)
    truth[:, 2] = 1.5
    image = random_image(4 * 112, 4 * 112)
    chip = align_faces(image, [face_with_landmarks(apply(truth, np.array(TEMPLATE.points)))], TEMPLATE)[0]
    blocks = image.reshape(112, 4, 112, 4, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(chip.transpose(1, 2, 0), blocks, atol=0.5 + EXACT)


def test_a_face_off_the_image_gives_a_black_chip():
    landmarks = np.array(TEMPLATE.points) + (5000.0, -3000.0)
    chip = align_faces(random_image(), [face_with_landmarks(landmarks)], TEMPLATE)[0]
    assert chip.shape == (3, 112, 112) and not chip.any()


def test_no_faces_gives_an_empty_batch():
    assert align_faces(random_image(), [], TEMPLATE).shape == (0, 3, 112, 112)


@pytest.mark.parametrize("seed", range(20))
def test_the_compiled_sampler_is_torch_s_grid_sample(seed):
    """Bilinear sampling with zeros outside, as torch's grid_sample (align_corners=False) computes
    it in float64: chips partly or wholly off the image, rotated and scaled (below the box-averaging
    scale), to within float32 positions."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    height, width, size = int(rng.integers(20, 200)), int(rng.integers(20, 200)), 48
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    angle, scale = rng.uniform(-np.pi, np.pi), rng.uniform(0.3, 1.9)
    chip_to_image = np.array([[scale * np.cos(angle), -scale * np.sin(angle), rng.uniform(-60, width + 20)],
                              [scale * np.sin(angle), scale * np.cos(angle), rng.uniform(-60, height + 20)]])
    chip = np.zeros((3, size, size), np.float32)
    align._warp(image, chip_to_image, chip)
    steps = np.arange(size, dtype=np.float64)
    u, v = np.meshgrid(steps, steps)
    x, y = (row[0] * u + row[1] * v + row[2] for row in chip_to_image)
    grid = np.stack([(2 * x + 1) / width - 1, (2 * y + 1) / height - 1], axis=-1)
    expected = F.grid_sample(torch.from_numpy(image.astype(np.float64)).permute(2, 0, 1)[None],
                             torch.from_numpy(grid[None]), mode="bilinear", padding_mode="zeros", align_corners=False)
    np.testing.assert_allclose(chip, expected[0].numpy(), rtol=0, atol=EXACT)
