"""Health, info, metrics, API keys, CORS, request ids and logs."""

from __future__ import annotations

import io
import logging

import pytest

from app.logging import log_handler
from tests.api.conftest import fake_card
from tests.metrics import metric_types, sample, samples
from tests.support.answers import refused
from tests.support.images import image_bytes

pytestmark = pytest.mark.anyio


def verify_files() -> dict:
    return {"files": {"image1": ("a.jpg", image_bytes()), "image2": ("b.jpg", image_bytes())}}


async def test_live_and_ready(client):
    assert (await client.get("/health/live")).json() == {"status": "live"}
    assert (await client.get("/health/ready")).json()["status"] == "ready"


async def test_info_has_the_card_and_the_active_settings(client):
    body = (await client.get("/info")).json()
    assert body["model"] == fake_card().to_json()
    assert body["model"]["name"] == "fake-encoder" and body["model"]["embedding_dim"] == 4
    service = body["service"]
    assert service["flip_tta"] is False and service["face_policy"] == "subject" and service["max_faces"] == 32
    assert service["default_operating_point"] == "far_1e-3"
    assert {point["name"]: point["far"] for point in service["operating_points"]} == {"far_1e-3": 0.001, "eer": 0.01}
    assert service["max_embed_images"] == 16


async def test_metrics_exposition(client):
    await client.post("/verify", **verify_files())
    await client.get("/nowhere")
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert sample(text, "facever_http_requests_total", route="/verify", method="POST", status="200") == 1.0
    assert sample(text, "facever_http_requests_total", route="unmatched", method="GET", status="404") == 1.0
    verify_labels = {"route": "/verify", "method": "POST", "status": "200"}
    assert sample(text, "facever_http_request_duration_seconds_bucket", **verify_labels, le="+Inf") == 1
    buckets = [le for (name, labels), _ in samples(text).items()
               if name == "facever_http_request_duration_seconds_bucket" and ("status", "200") in labels
               for key, le in labels if key == "le"]
    assert sorted(buckets, key=float) == ["0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0",
                                          "30.0", "+Inf"]
    assert sample(text, "facever_inference_duration_seconds_count", operation="verify") == 1
    assert sample(text, "facever_faces_detected_total", operation="verify") == 2.0
    assert metric_types(text)["facever_http_request_duration_seconds"] == "histogram"
    assert sample(text, "process_resident_memory_bytes") > 0  # the process collector
    for line in text.splitlines():  # every sample line is `name{labels} number`
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


async def test_api_keys(make_client):
    client = await make_client(api_keys=("first-key", "second-key"))
    refused(await client.post("/verify", **verify_files()), 401, "unauthorized")
    refused(await client.get("/info", headers={"X-API-Key": "first-ke"}), 401, "unauthorized")
    refused(await client.get("/metrics"), 401, "unauthorized")
    assert (await client.get("/info", headers={"X-API-Key": "second-key"})).status_code == 200
    response = await client.post("/verify", headers={"X-API-Key": "first-key"}, **verify_files())
    assert response.status_code == 200
    assert (await client.get("/health/live")).status_code == 200  # health stays open
    assert (await client.get("/health/ready")).status_code == 200


async def test_cors_off_by_default(client):
    response = await client.get("/health/live", headers={"Origin": "https://example.org"})
    assert "access-control-allow-origin" not in response.headers


async def test_cors_when_configured(make_client):
    client = await make_client(cors_origins=("https://app.example.org",))
    preflight = await client.options(
        "/verify",
        headers={
            "Origin": "https://app.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-API-Key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.org"
    refused = await client.get("/nowhere", headers={"Origin": "https://app.example.org"})
    assert refused.headers["access-control-allow-origin"] == "https://app.example.org"  # errors too
    other = await client.get("/health/live", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "DELETE"])
async def test_cors_preflight_allows_every_method_the_api_uses(make_client, method):
    """Galleries are changed with PATCH: a browser app on an allowed origin must be let send it."""
    client = await make_client(cors_origins=("https://app.example.org",))
    preflight = await client.options("/galleries/staff", headers={
        "Origin": "https://app.example.org", "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "Content-Type, X-API-Key"})
    assert preflight.status_code == 200, preflight.text
    assert method in preflight.headers["access-control-allow-methods"]


@pytest.mark.parametrize(
    ("sent", "kept"), [("trace-42.a:b", True), ("has spaces", False), ("x" * 129, False), ("", False)]
)
async def test_request_id_is_honoured_only_when_sane(client, sent, kept):
    response = await client.get("/info", headers={"X-Request-ID": sent})
    assert (response.headers["X-Request-ID"] == sent) is kept
    assert len(response.headers["X-Request-ID"]) > 0


async def test_logs_carry_the_request_id_and_no_image_data(client):
    stream = io.StringIO()
    previous = log_handler.setStream(stream)
    try:
        encoded = "data:image/jpeg;base64," + __import__("base64").b64encode(image_bytes()).decode()
        await client.post("/verify", json={"image1": encoded, "image2": encoded}, headers={"X-Request-ID": "req-7"})
        await client.post("/verify", json={"image1": encoded, "image2": "%%"}, headers={"X-Request-ID": "req-8"})
    finally:
        log_handler.setStream(previous)
    logs = stream.getvalue()
    assert "[req-7] POST /verify 200" in logs and "[req-8] POST /verify 422" in logs
    assert encoded[40:80] not in logs
    assert logging.getLogger("facever").level == logging.INFO


async def test_openapi_documents_both_body_forms(client):
    schema = (await client.get("/openapi.json")).json()
    content = schema["paths"]["/verify"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    assert content["multipart/form-data"]["schema"]["properties"]["image1"]["format"] == "binary"
