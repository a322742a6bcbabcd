"""Splits, chip caching with the centred-crop fallback, template resizing and augmentation."""

import json

import numpy as np
import pytest
import torch

from model.faces.align import align_faces
from model.training.data import Augment, Split, centred_face, load_or_make_split, make_split
from model.types import AlignmentTemplate

TEMPLATE = AlignmentTemplate(size=16, points=((5, 6), (10, 6), (7.5, 9), (5.5, 12), (9.5, 12)))


def test_split_takes_the_last_identities_in_natural_order():
    split = make_split([f"s{i}" for i in range(1, 41)], val=5, test=5)
    assert split.test == ("s36", "s37", "s38", "s39", "s40")
    assert split.val == ("s31", "s32", "s33", "s34", "s35")
    assert len(split.train) == 30 and split.train[:3] == ("s1", "s2", "s3")


def test_seeded_split_is_shuffled_reproducibly_and_disjoint():
    names = [f"p{i}" for i in range(20)]
    split = make_split(names, val=3, test=4, seed=7)
    assert split == make_split(names, val=3, test=4, seed=7)
    assert sorted(split.train + split.val + split.test) == sorted(names)
    with pytest.raises(ValueError):
        make_split(names, val=10, test=10)
    with pytest.raises(ValueError, match="must not share"):
        Split(("a", "b"), ("b",), ())


def test_split_around_named_test_identities():
    names = ["s1", "s2", "s3", "s4", "s5", "s10"]
    split = make_split(names, val=2, test={"s4", "s2"})
    assert split == Split(train=("s1", "s3"), val=("s5", "s10"), test=("s2", "s4"))
    seeded = make_split(names, val=2, test={"s4", "s2"}, seed=7)
    assert seeded == make_split(names, val=2, test={"s4", "s2"}, seed=7)
    assert seeded.test == ("s2", "s4") and sorted(seeded.train + seeded.val) == ["s1", "s10", "s3", "s5"]
    with pytest.raises(ValueError, match="lacks"):
        make_split(names, val=1, test={"s4", "s99"})
    with pytest.raises(ValueError, match="cannot hold out"):
        make_split(names, val=4, test={"s4", "s2"})


def test_without_a_file_the_split_is_made_and_nothing_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_or_make_split(None, ["a", "b", "c", "d"], val=1, test={"a"}) == Split(("b", "c"), ("d",), ("a",))
    assert not list(tmp_path.iterdir())


def test_split_file_is_written_once_then_read(tmp_path):
    path = tmp_path / "split.json"
    first = load_or_make_split(path, ["a", "b", "c", "d"], val=1, test=1)
    assert json.loads(path.read_text()) == {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
    path.write_text(json.dumps({"train": ["d", "c"], "val": ["b"], "test": ["a"]}))
    assert load_or_make_split(path, ["a", "b", "c", "d"], val=1, test=1) != first  # the file wins
    with pytest.raises(ValueError, match="lacks"):
        load_or_make_split(path, ["a", "b"], val=1, test=1)


def test_centred_face_aligns_to_the_centred_square():
    # A 16x24 (w x h) image: the centred square is rows 4..19, and the template is 16 wide, so the
    # chip is exactly that square.
    image = np.random.default_rng(0).integers(0, 256, (24, 16, 3), dtype=np.uint8)
    chip = align_faces(image, [centred_face((16, 24), TEMPLATE)], TEMPLATE)[0]
    np.testing.assert_allclose(chip.transpose(1, 2, 0), image[4:20].astype(np.float32), rtol=0, atol=0.01)


def test_resize_template_keeps_the_framing():
    bigger = TEMPLATE.resized(32)
    assert bigger.points[0] == pytest.approx((10.5, 12.5))  # (5 + 0.5) * 2 - 0.5
    assert bigger.weights == TEMPLATE.weights
    assert TEMPLATE.resized(16) == TEMPLATE


def test_augment_is_seeded_in_range_and_identity_when_switched_off():
    chips = torch.rand(6, 3, 16, 16) * 255
    augment = Augment()
    first = augment(chips, torch.Generator().manual_seed(3))
    assert torch.equal(first, augment(chips, torch.Generator().manual_seed(3)))
    assert first.shape == chips.shape and first.min() >= 0 and first.max() <= 255
    off = Augment(flip=0, scale=0, shift=0, brightness=0, contrast=0, saturation=0, greyscale=0, blur=0)
    assert torch.allclose(off(chips, torch.Generator()), chips, atol=1e-3)
    mirrored = Augment(flip=1, scale=0, shift=0, brightness=0, contrast=0, saturation=0, greyscale=0, blur=0)
    assert torch.allclose(mirrored(chips, torch.Generator()), chips.flip(-1), atol=1e-3)


def test_greyscale_and_blur():
    chips = torch.rand(2, 3, 8, 8) * 255
    grey = Augment(flip=0, scale=0, shift=0, brightness=0, contrast=0, saturation=0, greyscale=1, blur=0)(
        chips, torch.Generator()
    )
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    flat = torch.full((1, 3, 8, 8), 100.0)
    blurred = Augment(flip=0, scale=0, shift=0, brightness=0, contrast=0, saturation=0, greyscale=0, blur=1)(
        flat, torch.Generator()
    )
    assert torch.allclose(blurred, flat, atol=1e-3)  # the kernel sums to one
