"""Photos as users send them (model.evaluation.photo_mix) through /embed on the shipped weights:
every one is answered, and resident memory stays bounded however many distinct sizes arrive. Before
the detector's fixed canvases and the bounded runtime cache, every new size kept a few MiB (the
memory climbed from 249 to 996 MiB over 3,000 photos); `python -m bench.photo_memory` is the long
version, against a real server process.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from model.evaluation.photo_mix import photo_mix
from tests.integration.real_service import real_service
from tests.support.memory import needs_proc, rss_bytes

pytestmark = [pytest.mark.anyio, pytest.mark.data, pytest.mark.slow]

WARM_UP_PHOTOS = 80
STREAM_PHOTOS = 240
MAX_RSS_GROWTH = 0.15


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@needs_proc
async def test_a_stream_of_distinct_sizes_is_answered_in_bounded_memory(lfw_dir: Path):
    photos = photo_mix(lfw_dir / "images", WARM_UP_PHOTOS + STREAM_PHOTOS, seed=7, distinct_sizes=True)
    outcomes: Counter = Counter()
    async with real_service() as (_, client):
        for index, photo in enumerate(photos):
            if index == WARM_UP_PHOTOS:
                before = rss_bytes()
            response = await client.post("/embed", files={"images": ("photo.jpg", photo.data)})
            outcomes[response.status_code if response.status_code == 200 else response.json()["error"]["code"]] += 1
        after = rss_bytes()
    # Every photo holds a face the detector finds, upright once its EXIF orientation is applied.
    assert outcomes == {200: WARM_UP_PHOTOS + STREAM_PHOTOS}, outcomes
    growth = (after - before) / before
    assert growth < MAX_RSS_GROWTH, f"RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB ({growth:+.1%})"
