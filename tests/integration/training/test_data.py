"""Training data through the shipped detectors: chips of faceless images, cached once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from model.faces.detectors import build_detector
from model.training import data
from model.training.data import load_face_set
from model.types import AlignmentTemplate

TEMPLATE = AlignmentTemplate(size=16, points=((5, 6), (10, 6), (7.5, 9), (5.5, 12), (9.5, 12)))


def test_chips_of_faceless_images_are_centred_crops_cached_once(tmp_path, monkeypatch):
    images = tmp_path / "faces"
    rng = np.random.default_rng(1)
    for person in ("a", "b"):
        (images / person).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (20, 16), dtype=np.uint8), mode="L").save(images / person / f"{i}.pgm")
    yunet = build_detector("yunet")
    faces = load_face_set(images, ["b", "a"], TEMPLATE, yunet, cache_dir=tmp_path / "cache")
    assert faces.chips.shape == (4, 3, 16, 16) and faces.chips.dtype == torch.uint8
    assert faces.labels.tolist() == [0, 0, 1, 1] and faces.paths[0] == "b/0.pgm"
    assert not faces.detected.any()  # noise has no face: every chip is the centred crop
    grey = np.array(Image.open(images / "b" / "0.pgm"))
    assert torch.equal(faces.chips[0, 0], torch.from_numpy(grey[2:18]))

    cached = {path.name for path in (tmp_path / "cache").iterdir()}
    assert len(cached) == 1
    monkeypatch.setattr(data, "_locate", lambda *args: pytest.fail("the cache was not used"))
    again = load_face_set(images, ["b", "a"], TEMPLATE, yunet, cache_dir=tmp_path / "cache")
    assert torch.equal(again.chips, faces.chips)
    monkeypatch.undo()

    # The cache is keyed on the detector's settings: another detector, or the same one with other
    # settings, detects afresh into a cache file of its own.
    load_face_set(images, ["b", "a"], TEMPLATE, build_detector("mtcnn"), cache_dir=tmp_path / "cache")
    load_face_set(images, ["b", "a"], TEMPLATE, build_detector("yunet", min_face_size=40), cache_dir=tmp_path / "cache")
    assert len(set((tmp_path / "cache").iterdir())) == 3

    only_a = faces.subset(["a"])
    assert only_a.labels.tolist() == [0, 0] and only_a.paths == ("a/0.pgm", "a/1.pgm")
