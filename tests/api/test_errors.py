"""Every error code, in the one error shape, with its status."""

from __future__ import annotations

import base64

import pytest

import model.errors as model_errors
from app.errors import STATUS_BY_CODE, input_error_code, input_error_message
from tests.api.conftest import FakeVerifier, make_app
from tests.metrics import sample
from tests.service import client_for
from tests.support.answers import refused
from tests.support.images import image_bytes

pytestmark = pytest.mark.anyio


async def verify_files(client, first: bytes, second: bytes):
    return await client.post("/verify", files={"image1": ("a", first), "image2": ("b", second)})


async def test_invalid_image(client):
    body = refused(await verify_files(client, image_bytes(), b"\x00garbage"), 400, "invalid_image")
    assert body["error"]["message"].startswith("image2")


async def test_truncated_image(client):
    refused(await verify_files(client, image_bytes()[:200], image_bytes()), 400, "invalid_image")


async def test_unsupported_format(client):
    refused(await verify_files(client, b"%PDF-1.7\n...", image_bytes()), 415, "unsupported_format")


async def test_image_too_large_by_pixels(make_client):
    client = await make_client(max_image_pixels=5_000)
    refused(await verify_files(client, image_bytes(size=(100, 100)), image_bytes()), 413, "image_too_large")


async def test_payload_too_large_by_declared_length_reads_nothing(make_client):
    client = await make_client(max_upload_bytes=1_000)
    chunks_read = 0

    async def body():
        nonlocal chunks_read
        for _ in range(30):
            chunks_read += 1
            yield b"x" * 100

    response = await client.post(
        "/verify", content=body(), headers={"Content-Type": "application/json", "Content-Length": "3000"}
    )
    body_json = refused(response, 413, "payload_too_large")
    assert "3000" in body_json["error"]["message"] and "1000" in body_json["error"]["message"]
    assert chunks_read == 0
    metrics = (await client.get("/metrics")).text
    assert sample(metrics, "facever_http_requests_total", route="/verify", method="POST", status="413") == 1.0


async def test_payload_too_large_without_declared_length_stops_at_the_limit(make_client):
    client = await make_client(max_upload_bytes=1_000)
    chunks_read = 0

    async def endless_body():
        nonlocal chunks_read
        while chunks_read < 10_000:
            chunks_read += 1
            yield b"x" * 100

    response = await client.post("/verify", content=endless_body(), headers={"Content-Type": "application/json"})
    refused(response, 413, "payload_too_large")
    assert chunks_read <= 12  # stopped just past the limit, not at the end of the body


async def test_payload_too_large_in_multipart_stream(make_client):
    client = await make_client(max_upload_bytes=5_000)
    boundary = b"b0undary"
    head = b'--b0undary\r\nContent-Disposition: form-data; name="image1"; filename="a.jpg"\r\n\r\n'

    async def body():
        yield head
        for _ in range(100):
            yield b"\xff" * 1000

    response = await client.post(
        "/verify", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"}
    )
    refused(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("request_kwargs", "text"),
    [
        ({"files": {"image1": ("a", image_bytes())}}, "image2 is missing"),
        ({"files": {"image1": ("a", image_bytes()), "photo": ("b", image_bytes())}}, "photo"),
        ({"files": {"image1": ("a", image_bytes())}, "data": {"image2": "text"}}, "file part"),
        ({"json": {"image1": "aGk="}}, "image2"),
        ({"json": {"image1": "aGk=", "image2": "aGk=", "img3": "x"}}, "img3"),
        ({"json": {"image1": "%%%", "image2": "aGk="}}, "image1 is not valid base64"),
        ({"json": ["image1", "image2"]}, "object"),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, "JSON"),
        ({"content": b"raw bytes", "headers": {"Content-Type": "image/jpeg"}}, "multipart/form-data"),
        ({"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data"}}, "multipart"),
    ],
    ids=[
        "missing-field", "wrong-file-name", "text-instead-of-file", "json-missing", "json-extra",
        "bad-base64", "json-not-object", "bad-json", "wrong-content-type", "bad-multipart",
    ],
)
async def test_invalid_request(client, request_kwargs, text):
    body = refused(await client.post("/verify", **request_kwargs), 422, "invalid_request")
    assert text in body["error"]["message"]


async def test_validation_errors_of_fastapi_parameters_have_the_same_shape():
    app = make_app()

    @app.get("/needs-a-number")
    async def needs_a_number(n: int) -> int:
        return n

    async with client_for(app) as client:
        body = refused(await client.get("/needs-a-number", params={"n": "many"}), 422, "invalid_request")
    assert "query.n" in body["error"]["message"]


async def test_not_found_and_method_not_allowed(client):
    refused(await client.get("/nowhere"), 404, "not_found")
    response = await client.get("/verify")
    refused(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "POST"


async def test_internal_error_does_not_leak_details(make_client):
    client = await make_client(FakeVerifier(error=RuntimeError("secret path /srv/weights")))
    response = await verify_files(client, image_bytes(), image_bytes())
    body = refused(response, 500, "internal_error")
    assert "secret" not in response.text
    assert body["error"]["message"] == "internal error"
    assert (await client.get("/health/live")).status_code == 200  # still serving


async def test_every_code_has_a_status():
    assert STATUS_BY_CODE["invalid_request"] == 422 and STATUS_BY_CODE["overloaded"] == 503
    assert all(400 <= status < 600 for status in STATUS_BY_CODE.values())


async def test_json_images_count_toward_the_byte_limit(make_client):
    client = await make_client(max_upload_bytes=2_000)
    encoded = base64.b64encode(image_bytes(size=(300, 300))).decode()
    refused(await client.post("/verify", json={"image1": encoded, "image2": encoded}), 413, "payload_too_large")


def test_every_domain_error_of_the_model_side_has_a_code_and_the_api_wording():
    kinds = [kind for kind in vars(model_errors).values()
             if isinstance(kind, type) and issubclass(kind, model_errors.InputError)]
    assert all(input_error_code(kind("why")) in STATUS_BY_CODE for kind in kinds)
    error = model_errors.MultipleFaces("2 faces were detected").about("images[0]")
    assert (input_error_code(error), input_error_message(error)) == (
        "multiple_faces", "images[0]: 2 faces were detected; send an image with exactly one face")
    assert input_error_code(model_errors.Uncalibrated("no operating points")) == "invalid_request"
