"""POST /verify: both body forms, the decision options, and the answer's shape."""

from __future__ import annotations

import base64
import math

import pytest

from tests.api.conftest import FakeVerifier
from tests.support.answers import refused
from tests.support.images import BLUE, RED, image_bytes

pytestmark = pytest.mark.anyio


async def post_files(client, first: bytes, second: bytes, **fields):
    return await client.post("/verify", files={"image1": ("a.jpg", first), "image2": ("b.jpg", second)}, data=fields)


async def test_same_person_by_default_operating_point(client):
    response = await post_files(client, image_bytes(RED), image_bytes(RED, fmt="PNG"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["same"] is True
    assert body["distance"] == pytest.approx(0, abs=1e-2)
    assert body["threshold"] == 0.5
    assert body["operating_point"] == {
        "name": "far_1e-3", "threshold": 0.5, "far": 0.001, "frr": 0.02, "description": "strict"
    }
    assert body["probability_same"] == pytest.approx(1 / (1 + math.exp(10 * body["distance"] - 5)))
    assert body["model"] == {"name": "fake-encoder", "version": "0.0-test"}
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert set(body["timings_ms"]) == {"decode", "detect", "align", "embed", "quality", "total"}
    assert body["timings_ms"]["total"] >= body["timings_ms"]["decode"]
    face = body["faces"]["image1"]
    assert face["box"] == {"x1": 10.0, "y1": 10.0, "x2": 90.0, "y2": 90.0}
    assert set(face["landmarks"]) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    assert face["landmarks"]["left_eye"] == {"x": 30.0, "y": 40.0}
    assert face["detection_score"] == 0.99 and face["faces_detected"] == 1


async def test_different_people(client):
    body = (await post_files(client, image_bytes(RED), image_bytes(BLUE))).json()
    assert body["same"] is False and body["distance"] > 0.5


async def test_explicit_threshold_has_no_operating_point(client):
    body = (await post_files(client, image_bytes(RED), image_bytes(BLUE), threshold="1.9")).json()
    assert body["same"] is True and body["threshold"] == 1.9 and body["operating_point"] is None


async def test_named_operating_point(client):
    body = (await post_files(client, image_bytes(RED), image_bytes(RED), operating_point="eer")).json()
    assert body["operating_point"]["name"] == "eer" and body["threshold"] == 0.6


async def test_json_with_base64_and_data_urls_equals_multipart(client):
    first, second = image_bytes(RED), image_bytes(BLUE)
    multipart = (await post_files(client, first, second)).json()
    response = await client.post(
        "/verify",
        json={
            "image1": "data:image/jpeg;base64," + base64.b64encode(first).decode(),
            "image2": base64.urlsafe_b64encode(second).decode().rstrip("="),
        },
    )
    as_json = response.json()
    for key in ("same", "distance", "threshold", "operating_point", "faces", "model"):
        assert as_json[key] == multipart[key]


async def test_line_wrapped_base64_is_accepted(client):
    encoded = base64.encodebytes(image_bytes(RED)).decode()  # 76-character lines
    response = await client.post("/verify", json={"image1": encoded, "image2": encoded})
    assert response.status_code == 200 and response.json()["same"] is True


async def test_face_policy_per_request(client):
    wide = image_bytes(RED, size=(250, 100))  # the fake finds two faces
    largest = await post_files(client, wide, image_bytes(RED))
    assert largest.status_code == 200 and largest.json()["faces"]["image1"]["faces_detected"] == 2
    refused(await post_files(client, wide, image_bytes(RED), face_policy="reject"), 422, "multiple_faces")


async def test_service_face_policy_setting(make_client):
    client = await make_client(FakeVerifier(face_policy="reject"), face_policy="reject")
    refused(await post_files(client, image_bytes(size=(250, 100)), image_bytes()), 422, "multiple_faces")


async def test_no_face_names_the_image(client):
    body = refused(await post_files(client, image_bytes(), image_bytes(size=(60, 60))), 422, "no_face_detected")
    assert body["error"]["message"].startswith("image2")


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"threshold": "0.5", "operating_point": "eer"}, "not both"),
        ({"operating_point": "far_1e-9"}, "unknown operating point"),
        ({"threshold": "3"}, "threshold"),
        ({"threshold": "nan"}, "threshold"),
        ({"face_policy": "smallest"}, "face_policy"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_invalid_options(client, fields, text):
    body = refused(await post_files(client, image_bytes(), image_bytes(), **fields), 422, "invalid_request")
    assert text in body["error"]["message"]


async def test_uncalibrated_model_needs_an_explicit_threshold(make_client):
    client = await make_client(FakeVerifier(calibrated=False))
    body = refused(await post_files(client, image_bytes(), image_bytes()), 422, "invalid_request")
    assert "threshold" in body["error"]["message"]
    answer = (await post_files(client, image_bytes(), image_bytes(), threshold="0.6")).json()
    assert answer["same"] is True and answer["probability_same"] is None


async def test_an_unknown_operating_point_is_refused_before_the_images_are_read(client):
    body = refused(await post_files(client, b"not an image", b"", operating_point="far_1e-9"), 422, "invalid_request")
    assert "unknown operating point" in body["error"]["message"]
