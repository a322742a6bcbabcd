"""What the tests assert of the service's answers."""

from __future__ import annotations

import httpx


def refused(response: httpx.Response, status: int, code: str, naming: str = "") -> dict:
    """The one error shape, {"error": {"code", "message"}, "request_id"}, with the request id echoed
    in a header, of this status and code; its message names `naming`. The body is returned."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "request_id"}, body
    error = body["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert naming in error["message"], error
    assert response.headers["X-Request-ID"] == body["request_id"]
    return body
