"""MTCNN building blocks against straightforward references: weights, NMS, area resampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import model.faces.mtcnn as mtcnn
from model.faces.mtcnn import MTCNN
from model.faces.networks.mtcnn import ONet, PNet, RNet
from tests.conftest import WEIGHTS_DIR

RNG = np.random.default_rng(3)


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    return MTCNN()


@pytest.mark.parametrize("network, file", [(PNet, "pnet.pt"), (RNet, "rnet.pt"), (ONet, "onet.pt")])
def test_state_dict_keys_and_shapes_match_the_weight_files(network, file):
    stored = torch.load(WEIGHTS_DIR / "mtcnn" / file, weights_only=True)
    ours = network().state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in stored.items()}


@pytest.mark.parametrize("size", [(151, 151), (107, 80), (17, 12), (24, 24), (300, 260)])
def test_pyramid_levels_equal_torch_area_interpolation_bit_for_bit(size):
    image = RNG.integers(0, 256, size=(250, 200, 3), dtype=np.uint8)
    tables = mtcnn._SummedAreaTables([image])
    expected = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=size,
                             mode="area")
    assert np.array_equal(tables.resize(0, *size), expected.permute(0, 2, 3, 1).numpy())


def test_crops_equal_area_interpolation_of_each_crop_across_images():
    images = [RNG.integers(0, 256, size=(90, 120, 3), dtype=np.uint8),
              RNG.integers(0, 256, size=(60, 50, 3), dtype=np.uint8)]
    tables = mtcnn._SummedAreaTables(images)
    windows = np.array([[0, 0, 120, 90], [10, 5, 17, 60], [3, 4, 50, 60], [40, 30, 41, 31]])
    image_index = np.array([0, 0, 1, 1])
    crops = tables.crops(image_index, windows, 24)
    for crop, (x0, y0, x1, y1), index in zip(crops, windows.tolist(), image_index.tolist()):
        region = torch.from_numpy(images[index][y0:y1, x0:x1]).permute(2, 0, 1)[None].float()
        expected = F.interpolate(region, size=(24, 24), mode="area")[0].permute(1, 2, 0).numpy()
        assert np.array_equal(crop, expected)


@pytest.mark.parametrize("height", [12, 13, 40, 41])
def test_pnet_in_strips_gives_the_maps_of_one_pass(monkeypatch, detector, height):
    monkeypatch.setattr(mtcnn, "PNET_STRIP_ROWS", 7)
    level = RNG.standard_normal((1, height, 30, 3)).astype(np.float32)
    whole = detector.pnet(level)
    in_strips = mtcnn._pnet_in_strips(detector.pnet, level)
    for a, b in zip(whole, in_strips):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
