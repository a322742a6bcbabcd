"""POST /group end to end on real LFW photos with the shipped weights: every face of a batch of
photos, and embeddings from /embed, grouped by person at the card's calibrated threshold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.real_service import real_service
from tests.support.answers import refused

pytestmark = [pytest.mark.anyio, pytest.mark.data]

PEOPLE = ("Colin_Powell", "George_W_Bush", "Hugo_Chavez")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def client(lfw_dir: Path):
    async with real_service() as (_, client):
        yield client


def photo(lfw_dir: Path, person: str, number: int) -> bytes:
    return (lfw_dir / "images" / person / f"{person}_{number:04d}.jpg").read_bytes()


async def test_three_photos_each_of_three_people_and_one_of_a_fourth(client, lfw_dir):
    files = [("images", (f"{person}-{n}.jpg", photo(lfw_dir, person, n))) for person in PEOPLE for n in (1, 2, 3)]
    files.append(("images", ("alone.jpg", photo(lfw_dir, "Gwyneth_Paltrow", 1))))
    response = await client.post("/group", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["grouping"]["calibrated"] and body["grouping"]["rule"] == "average_linkage"
    # Each photo's subject is the largest face; bystanders (if any) are faces of their own.
    groups = [sorted(face["image"] for face in group) for group in body["groups"]]
    for index in range(len(PEOPLE)):
        assert [3 * index, 3 * index + 1, 3 * index + 2] in groups
    assert 9 in [face["image"] for face in body["ungrouped"]]
    assert body["no_face"] == []


async def test_embeddings_join_the_faces_of_their_person(client, lfw_dir):
    embedded = await client.post("/embed", files=[("images", ("a.jpg", photo(lfw_dir, "Colin_Powell", 4)))])
    files = [("images", (f"{n}.jpg", photo(lfw_dir, "Colin_Powell", n))) for n in (1, 2)]
    files.append(("images", ("b.jpg", photo(lfw_dir, "Hugo_Chavez", 1))))
    response = await client.post("/group", files=files, data={"embeddings": json.dumps(embedded.json()["embeddings"])})
    assert response.status_code == 200, response.text
    groups = [sorted((face["image"] if face["image"] is not None else -1) for face in group)
              for group in response.json()["groups"]]
    assert [-1, 0, 1] in groups


async def test_bad_batches(client, lfw_dir):
    refused(await client.post("/group", json={"images": [], "embeddings": []}), 422, "empty_batch")
    embedded = (await client.post("/embed", files=[("images", ("a.jpg", photo(lfw_dir, "Colin_Powell", 1)))])).json()
    foreign = {**embedded["embeddings"][0], "model": {**embedded["embeddings"][0]["model"], "version": "0"}}
    refused(await client.post("/group", json={"embeddings": [embedded["embeddings"][0], foreign]}), 422,
            "incompatible_embedding", "embeddings[1]")


async def test_more_faces_than_the_limit(lfw_dir):
    async with real_service(max_group_faces=2) as (_, client):
        files = [("images", (f"{n}.jpg", photo(lfw_dir, "Colin_Powell", n))) for n in (1, 2, 3)]
        refused(await client.post("/group", files=files), 422, "too_many_faces", "at most 2")
