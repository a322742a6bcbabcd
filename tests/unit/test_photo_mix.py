"""The photo mix the benchmarks and the memory test send: seeded, of distinct sizes where asked, and
upright once its EXIF orientation is applied (made here from a few plain images in LFW's layout)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.evaluation.photo_mix import MAX_MEGAPIXELS, MIN_MEGAPIXELS, photo_mix, size_class, upscaled
from model.images import decode_image


@pytest.fixture(scope="module")
def lfw_like(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lfw")
    rng = np.random.default_rng(0)
    for name in ("Ann_A", "Bob_B", "Cy_C", "Di_D", "Ed_E"):
        (root / name).mkdir()
        pixels = rng.integers(0, 256, size=(250, 250, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / name / f"{name}_0001.jpg", quality=90)
    return root


def test_the_same_seed_makes_the_same_photos_byte_for_byte(lfw_like):
    first = [photo.data for photo in photo_mix(lfw_like, 12, seed=3)]
    assert first == [photo.data for photo in photo_mix(lfw_like, 12, seed=3)]
    assert first != [photo.data for photo in photo_mix(lfw_like, 12, seed=4)]


def test_photos_decode_upright_at_their_drawn_size_within_the_range(lfw_like):
    photos = list(photo_mix(lfw_like, 40, seed=1, distinct_sizes=True))
    assert len({photo.size for photo in photos}) == 40
    assert {photo.orientation for photo in photos} - {1}  # some are stored turned
    for photo in photos:
        assert decode_image(photo.data).size == photo.size
        assert min(photo.size) >= 200 and MIN_MEGAPIXELS * 0.9 <= photo.megapixels <= MAX_MEGAPIXELS * 1.1
        assert 1 <= photo.faces <= 4 and len(photo.sources) == photo.faces


def test_fixed_sizes_are_cycled_and_classed(lfw_like):
    photos = list(photo_mix(lfw_like, 4, sizes=[(1024, 768), (4032, 3024)], collages=False))
    assert [photo.size for photo in photos] == [(1024, 768), (4032, 3024)] * 2
    assert [size_class(photo.size) for photo in photos[:2]] == ["webcam", "phone"]
    assert decode_image(upscaled(lfw_like / "Ann_A" / "Ann_A_0001.jpg", (2048, 1536))).size == (2048, 1536)
