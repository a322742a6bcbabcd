"""A short soak: a few hundred real /verify requests through the in-process app on the shipped
weights, four at a time. No request may fail, and resident memory may grow by less than 10% after
the warm-up: leaking the decoded images of each request (380 kB: two 250x250 RGB) would exceed it.
`python -m bench.soak` is the long version, against a real server process.
"""

from __future__ import annotations

import asyncio
from itertools import cycle
from pathlib import Path

import pytest

from model.evaluation.protocols import read_pairs
from tests.integration.real_service import real_service
from tests.support.memory import needs_proc, rss_bytes

pytestmark = [pytest.mark.anyio, pytest.mark.data, pytest.mark.slow]

# The warm-up lets malloc's per-thread arenas settle and shows the pipeline every pair several
# times: resident memory rises over the first requests before it holds (bench/soak.py).
WARM_UP_REQUESTS = 60
SOAK_REQUESTS = 240
CONCURRENCY = 4
MAX_RSS_GROWTH = 0.10
PAIRS = 20


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


async def send(client, pairs, count: int) -> list[int]:
    """`count` verifies from the cycled pairs, CONCURRENCY at a time; the status of each."""
    work = cycle(pairs)
    statuses: list[int] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            first, second = next(work)
            response = await client.post("/verify", files={"image1": ("1.jpg", first), "image2": ("2.jpg", second)})
            statuses.append(response.status_code)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


@needs_proc
async def test_soak_without_errors_or_memory_growth(lfw_dir: Path):
    images = lfw_dir / "images"
    pairs = [
        ((images / pair.first).read_bytes(), (images / pair.second).read_bytes())
        for pair in read_pairs(lfw_dir / "pairs.txt")[:PAIRS]
    ]
    async with real_service() as (_, client):
        assert set(await send(client, pairs, WARM_UP_REQUESTS)) == {200}
        before = rss_bytes()
        statuses = await send(client, pairs, SOAK_REQUESTS)
        after = rss_bytes()
    assert len(statuses) == SOAK_REQUESTS and set(statuses) == {200}, sorted(set(statuses))
    growth = (after - before) / before
    assert growth < MAX_RSS_GROWTH, f"RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB ({growth:+.1%})"
