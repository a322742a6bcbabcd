"""POST /group through HTTP on the fake verifier: every face of each image, and embeddings from
/embed, grouped by person (the fake's faces are the same person where their colour is the same)."""

from __future__ import annotations

import base64

import pytest

from tests.api.conftest import FakeVerifier
from tests.support.answers import refused
from tests.support.images import BLUE, RED, image_bytes

pytestmark = pytest.mark.anyio

THREE_RED = image_bytes(RED, size=(300, 100))  # three faces of one person
ONE_BLUE = image_bytes(BLUE)
NO_FACE = image_bytes(RED, size=(60, 100))


def faces_of(group: list[dict]) -> list[tuple]:
    return [(face["image"], face["embedding"]) for face in group]


async def test_every_face_of_every_image_grouped_by_person(client):
    files = [("images", ("a.jpg", THREE_RED)), ("images", ("b.jpg", ONE_BLUE)), ("images", ("c.jpg", NO_FACE))]
    response = await client.post("/group", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [faces_of(group) for group in body["groups"]] == [[(0, None)] * 3]
    assert [face["box"]["x1"] for face in body["groups"][0]] == [10.0, 110.0, 210.0]
    assert faces_of(body["ungrouped"]) == [(1, None)]
    assert body["no_face"] == [2]
    assert body["faces"] == 4
    assert body["grouping"] == {"rule": "average_linkage", "threshold": 0.1, "calibrated": True, "link_far": 1e-5}
    assert body["model"] == {"name": "fake-encoder", "version": "0.0-test"}
    assert body["request_id"] == response.headers["X-Request-ID"]


async def test_json_equals_multipart(client):
    multipart = (await client.post("/group", files=[("images", ("a.jpg", THREE_RED)),
                                                    ("images", ("b.jpg", ONE_BLUE))])).json()
    as_json = (await client.post("/group", json={"images": [base64.b64encode(THREE_RED).decode(),
                                                            base64.b64encode(ONE_BLUE).decode()]})).json()
    assert as_json["groups"] == multipart["groups"] and as_json["ungrouped"] == multipart["ungrouped"]


async def test_embeddings_from_embed_group_with_the_faces_of_images(client):
    embedded = (await client.post("/embed", files=[("images", ("r.jpg", image_bytes(RED))),
                                                   ("images", ("b.jpg", ONE_BLUE))])).json()["embeddings"]
    response = await client.post("/group", json={"images": [base64.b64encode(ONE_BLUE).decode()],
                                                 "embeddings": embedded})
    body = response.json()
    assert [faces_of(group) for group in body["groups"]] == [[(0, None), (None, 1)]]
    assert faces_of(body["ungrouped"]) == [(None, 0)]
    assert body["ungrouped"][0]["box"] is None


async def test_a_request_s_own_threshold_is_said_to_be_its_own(client):
    body = (await client.post("/group", json={"images": [base64.b64encode(THREE_RED).decode()],
                                              "threshold": 1.5})).json()
    assert body["grouping"] == {"rule": "average_linkage", "threshold": 1.5, "calibrated": False, "link_far": None}


async def test_an_uncalibrated_card_needs_a_threshold(make_client):
    client = await make_client(FakeVerifier(calibrated=False))
    refused(await client.post("/group", files=[("images", ("a.jpg", THREE_RED))]), 422, "invalid_request",
            "threshold")
    response = await client.post("/group", files=[("images", ("a.jpg", THREE_RED))], data={"threshold": "0.1"})
    assert response.status_code == 200, response.text


async def test_too_many_faces(make_client):
    client = await make_client(max_group_faces=2)
    refused(await client.post("/group", files=[("images", ("a.jpg", THREE_RED))]), 422, "too_many_faces", "at most 2")
    embedded = (await client.post("/embed", files=[("images", ("r.jpg", ONE_BLUE))])).json()["embeddings"]
    refused(await client.post("/group", json={"embeddings": embedded * 3}), 422, "too_many_faces", "3 faces")


async def test_too_many_images(make_client):
    client = await make_client(max_group_images=1)
    refused(await client.post("/group", files=[("images", ("a.jpg", ONE_BLUE))] * 2), 422, "invalid_request",
            "at most 1")


@pytest.mark.parametrize("request_kwargs", [{"json": {}}, {"json": {"images": [], "embeddings": []}},
                                            {"data": {"threshold": "0.3"}, "files": {"other": ("x", b"")}}])
async def test_an_empty_batch(client, request_kwargs):
    response = await client.post("/group", **request_kwargs)
    if "files" in request_kwargs:
        refused(response, 422, "invalid_request", "other")
    else:
        refused(response, 422, "empty_batch", "empty")


async def test_an_empty_multipart_batch(client):
    refused(await client.post("/group", files={"threshold": (None, "0.3")}), 422, "empty_batch")


async def test_an_embedding_of_another_model_is_refused(client):
    embedded = (await client.post("/embed", files=[("images", ("r.jpg", ONE_BLUE))])).json()["embeddings"][0]
    other = {**embedded, "model": {**embedded["model"], "name": "another-encoder"}}
    refused(await client.post("/group", json={"embeddings": [embedded, other]}), 422, "incompatible_embedding",
            "embeddings[1]")


@pytest.mark.parametrize("body,naming", [({"images": ["x"], "face_policy": "largest"}, "face_policy"),
                                         ({"images": ["x"], "threshold": 0}, "threshold"),
                                         ({"images": "not a list"}, "images")])
async def test_invalid_requests(client, body, naming):
    refused(await client.post("/group", json=body), 422, "invalid_request", naming)


async def test_not_an_image(client):
    refused(await client.post("/group", files=[("images", ("a.jpg", ONE_BLUE)), ("images", ("b.jpg", b"nope"))]),
            400, "invalid_image", "images[1]")
