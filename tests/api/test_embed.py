"""POST /embed: one or more images, multipart or JSON, unit-norm embeddings in request order."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.support.answers import refused
from tests.support.images import BLUE, RED, image_bytes

pytestmark = pytest.mark.anyio


async def test_multipart_images_in_order(client):
    files = [("images", ("a.jpg", image_bytes(RED))), ("images", ("b.png", image_bytes(BLUE, fmt="PNG")))]
    response = await client.post("/embed", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["dim"] for item in body["embeddings"]] == [4, 4]
    first, second = (np.array(item["embedding"]) for item in body["embeddings"])
    assert np.linalg.norm(first) == pytest.approx(1, abs=1e-5)
    assert first[0] > first[2] and second[2] > second[0]  # red first, blue second
    assert body["embeddings"][0]["face"]["faces_detected"] == 1
    assert body["model"] == {"name": "fake-encoder", "version": "0.0-test"}
    assert set(body["timings_ms"]) == {"decode", "detect", "align", "embed", "quality", "total"}
    assert body["request_id"] == response.headers["X-Request-ID"]


async def test_json_equals_multipart(client):
    data = image_bytes(RED)
    multipart = (await client.post("/embed", files=[("images", ("a.jpg", data))])).json()
    as_json = (await client.post("/embed", json={"images": [base64.b64encode(data).decode()]})).json()
    assert as_json["embeddings"] == multipart["embeddings"]


async def test_face_policy(client):
    wide = base64.b64encode(image_bytes(size=(250, 100))).decode()
    assert (await client.post("/embed", json={"images": [wide]})).status_code == 200
    response = await client.post("/embed", json={"images": [wide], "face_policy": "reject"})
    assert "images[0]" in refused(response, 422, "multiple_faces")["error"]["message"]


async def test_too_many_images(make_client):
    client = await make_client(max_embed_images=2)
    encoded = base64.b64encode(image_bytes()).decode()
    refused(await client.post("/embed", json={"images": [encoded] * 3}), 422, "invalid_request")
    files = [("images", (f"{i}.jpg", image_bytes())) for i in range(3)]
    refused(await client.post("/embed", files=files), 422, "invalid_request")


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"json": {"images": []}},
        {"json": {}},
        {"json": {"image": ["x"]}},
        {"json": {"images": ["not base64!"]}},
        {"files": [("image", ("a.jpg", image_bytes()))]},
        {"files": {"other": ("a.txt", b"x")}, "data": {"face_policy": "largest"}},
    ],
    ids=["empty-list", "missing", "wrong-name", "bad-base64", "wrong-file-field", "no-images"],
)
async def test_invalid_requests(client, request_kwargs):
    refused(await client.post("/embed", **request_kwargs), 422, "invalid_request")


async def test_error_names_the_failing_image(client):
    files = [("images", ("a.jpg", image_bytes())), ("images", ("b.jpg", b"not an image"))]
    body = refused(await client.post("/embed", files=files), 400, "invalid_image")
    assert body["error"]["message"].startswith("images[1]")
