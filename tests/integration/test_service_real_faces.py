"""The service end to end on real LFW faces with the shipped weights: HTTP in, decisions out.

The app is built once for the module (loading and warming up the models takes a second or two).
Decisions use the card's default operating point, so the card must be calibrated.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.evaluation.protocols import read_pairs
from tests.integration.real_service import ENCODER_DIR, real_service

pytestmark = [pytest.mark.anyio, pytest.mark.data]

PAIRS_PER_KIND = 4
EXIF_ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def lfw_pairs(lfw_dir: Path):
    """The first same-person and different-person pairs of fold 1 of the official protocol."""
    pairs = [pair for pair in read_pairs(lfw_dir / "pairs.txt") if pair.fold == 0]
    same = [pair for pair in pairs if pair.same][:PAIRS_PER_KIND]
    different = [pair for pair in pairs if not pair.same][:PAIRS_PER_KIND]
    return same, different


@pytest.fixture(scope="module")
async def client(lfw_dir: Path):
    async with real_service() as (_, client):
        yield client


def read_image(lfw_dir: Path, name: str) -> bytes:
    return (lfw_dir / "images" / name).read_bytes()


async def verify(client, first: bytes, second: bytes) -> dict:
    response = await client.post("/verify", files={"image1": ("1.jpg", first), "image2": ("2.jpg", second)})
    assert response.status_code == 200, response.text
    return response.json()


async def test_same_person_pairs_are_same(client, lfw_dir, lfw_pairs):
    same, _ = lfw_pairs
    for pair in same:
        answer = await verify(client, read_image(lfw_dir, pair.first), read_image(lfw_dir, pair.second))
        assert answer["same"] is True, (pair, answer["distance"], answer["threshold"])
        assert answer["operating_point"] is not None  # the card's default


async def test_different_person_pairs_are_not_same(client, lfw_dir, lfw_pairs):
    _, different = lfw_pairs
    for pair in different:
        answer = await verify(client, read_image(lfw_dir, pair.first), read_image(lfw_dir, pair.second))
        assert answer["same"] is False, (pair, answer["distance"], answer["threshold"])


def rotated_with_exif_orientation(jpeg: bytes) -> bytes:
    """The pixels turned a quarter counter-clockwise, tagged Orientation 6 ("rotate 90 CW to view"),
    as a phone camera held sideways writes them."""
    image = Image.open(io.BytesIO(jpeg))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    buffer = io.BytesIO()
    image.transpose(Image.Transpose.ROTATE_90).save(buffer, format="JPEG", quality=95, exif=exif)
    return buffer.getvalue()


async def test_exif_rotated_copy_verifies_against_its_original(client, lfw_dir, lfw_pairs):
    original = read_image(lfw_dir, lfw_pairs[0][0].first)
    rotated = rotated_with_exif_orientation(original)
    assert Image.open(io.BytesIO(rotated)).size == Image.open(io.BytesIO(original)).size[::-1]
    answer = await verify(client, original, rotated)
    assert answer["same"] is True and answer["distance"] < 0.2, answer["distance"]
    box_original, box_rotated = answer["faces"]["image1"]["box"], answer["faces"]["image2"]["box"]
    assert all(abs(box_original[key] - box_rotated[key]) < 10 for key in box_original)  # found upright


async def test_json_base64_equals_multipart(client, lfw_dir, lfw_pairs):
    pair = lfw_pairs[1][0]
    first, second = read_image(lfw_dir, pair.first), read_image(lfw_dir, pair.second)
    multipart = await verify(client, first, second)
    response = await client.post(
        "/verify",
        json={
            "image1": "data:image/jpeg;base64," + base64.b64encode(first).decode(),
            "image2": base64.b64encode(second).decode(),
        },
    )
    assert response.status_code == 200, response.text
    as_json = response.json()
    assert as_json["same"] == multipart["same"]
    assert as_json["distance"] == pytest.approx(multipart["distance"], abs=1e-5)
    assert as_json["faces"] == multipart["faces"]


async def test_embed_returns_unit_vectors_whose_distance_verify_reports(client, lfw_dir, lfw_pairs):
    pair = lfw_pairs[0][0]
    first, second = read_image(lfw_dir, pair.first), read_image(lfw_dir, pair.second)
    response = await client.post("/embed", files=[("images", ("1.jpg", first)), ("images", ("2.jpg", second))])
    assert response.status_code == 200, response.text
    vectors = [np.asarray(item["embedding"], dtype=np.float64) for item in response.json()["embeddings"]]
    dim = json.loads((ENCODER_DIR / "model.json").read_text())["embedding_dim"]
    assert [len(vector) for vector in vectors] == [dim, dim]
    assert [item["dim"] for item in response.json()["embeddings"]] == [dim, dim]
    for vector in vectors:
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    answer = await verify(client, first, second)
    assert np.linalg.norm(vectors[0] - vectors[1]) == pytest.approx(answer["distance"], abs=1e-4)


async def test_embed_of_more_images_than_one_pass_keeps_order_and_names_the_failing_image(client, lfw_dir, lfw_pairs):
    paths = [path for pair in lfw_pairs[0] + lfw_pairs[1] for path in (pair.first, pair.second)][:6]
    images = [read_image(lfw_dir, path) for path in paths]
    response = await client.post("/embed", files=[("images", (f"{i}.jpg", data)) for i, data in enumerate(images)])
    assert response.status_code == 200, response.text
    together = [np.asarray(item["embedding"]) for item in response.json()["embeddings"]]
    for data, vector in zip(images, together):
        alone = (await client.post("/embed", files=[("images", ("x.jpg", data))])).json()["embeddings"][0]
        # bfloat16 results move slightly with the batch (oneDNN picks kernels by shape): 0.003
        # here, against a decision threshold of about 0.63.
        assert np.linalg.norm(np.asarray(alone["embedding"]) - vector) < 1e-2

    blank = io.BytesIO()
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank, format="PNG")
    files = [("images", (f"{i}.jpg", data)) for i, data in enumerate(images[:5])] + [("images", ("b.png", blank.getvalue()))]
    response = await client.post("/embed", files=files)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "no_face_detected"
    assert response.json()["error"]["message"].startswith("images[5]")
