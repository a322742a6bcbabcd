"""Keys over HTTP on a fake model and a SQLite file: the open service closes once a key is stored and
never reopens by itself; a key given and refused is never taken for the open service; the limits
answer 429 with Retry-After; metrics name keys by id only."""

from __future__ import annotations

import pytest

from tests.api.conftest import make_app
from tests.metrics import sample
from tests.service import running, storage_becomes
from tests.support.answers import refused

pytestmark = pytest.mark.anyio


async def test_the_open_service_closes_with_the_first_key_and_stays_closed(tmp_path):
    async with running(make_app(storage_url=f"sqlite:///{tmp_path}/keys.sqlite3")) as client:
        await storage_becomes(client, "ok")
        assert (await client.get("/galleries")).status_code == 200  # no key anywhere: open
        made = await client.post("/keys", json={"name": "first", "scopes": ["admin"]})
        assert made.status_code == 201 and made.json()["key"].startswith(f"fvk_{made.json()['id']}_")
        key = {"X-API-Key": made.json()["key"]}
        refused(await client.get("/galleries"), 401, "unauthorized")
        assert (await client.get("/galleries", headers=key)).status_code == 200
        secret = made.json()["key"]
        wrong = secret[:-1] + ("B" if secret.endswith("A") else "A")  # always another key (a secret may end in A)
        refused(await client.get("/galleries", headers={"X-API-Key": wrong}), 401, "unauthorized")
        refused(await client.get("/galleries", headers={"X-API-Key": "not-a-key"}), 401, "unauthorized")
        assert (await client.delete(f"/keys/{made.json()['id']}", headers=key)).json()["revoked_at"]
        refused(await client.get("/galleries", headers=key), 401, "unauthorized")  # at once, on this replica
        refused(await client.get("/galleries"), 401, "unauthorized")  # the last key revoked: still closed
        refused(await client.post("/verify"), 401, "unauthorized")


async def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_do_not(tmp_path):
    app = make_app(storage_url=f"sqlite:///{tmp_path}/keys.sqlite3", write_api_keys=("root",))
    async with running(app) as client:
        await storage_becomes(client, "ok")
        root = {"X-API-Key": "root"}
        slow, other = [(await client.post("/keys", headers=root, json={
            "name": name, "scopes": ["read"], "rate_per_s": 0.5, "burst": 2})).json() for name in ("slow", "other")]
        answers = [await client.get("/galleries", headers={"X-API-Key": slow["key"]}) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [200, 200, 429]
        assert refused(answers[2], 429, "rate_limited", slow["id"]) and answers[2].headers["Retry-After"] == "2"
        assert (await client.get("/galleries", headers={"X-API-Key": other["key"]})).status_code == 200
        metrics = (await client.get("/metrics", headers=root)).text
        assert sample(metrics, "facever_key_refusals_total", key_id=slow["id"], reason="rate_limited") == 1.0
        assert sample(metrics, "facever_key_requests_total", key_id=other["id"], scope="read") == 1.0
        assert slow["key"] not in metrics and other["key"] not in metrics


async def test_an_address_that_keeps_failing_is_refused_before_any_key_is_checked(tmp_path):
    app = make_app(api_keys=("good",), auth_failure_limit=3, auth_failure_window_s=60)
    async with running(app) as client:
        for _ in range(3):
            refused(await client.post("/verify", headers={"X-API-Key": "guess"}), 401, "unauthorized")
        throttled = await client.post("/verify", headers={"X-API-Key": "good"})
        refused(throttled, 429, "rate_limited", "failed authentications")
        assert int(throttled.headers["Retry-After"]) >= 59


async def test_keys_that_could_never_work_as_asked_are_refused(tmp_path):
    async with running(make_app(storage_url=f"sqlite:///{tmp_path}/keys.sqlite3", write_api_keys=("root",))) as client:
        await storage_becomes(client, "ok")
        root = {"X-API-Key": "root"}
        for body, naming in (({"expires_at": "2000-01-01T00:00:00Z"}, "expired already"),
                             ({"expires_at": "2099-01-01T00:00:00"}, "time zone"),
                             ({"scopes": ["admin"], "galleries": ["acme-*"]}, "every gallery"),
                             ({"scopes": ["write"]}, "unknown scope"),
                             ({"galleries": ["acme-*-x*"]}, "prefix")):
            refused(await client.post("/keys", headers=root, json={"name": "k", "scopes": ["read"], **body}),
                    422, "invalid_request", naming)


async def test_a_stored_key_where_storage_is_off_is_refused_not_an_error():
    async with running(make_app()) as client:  # storage off, no keys: open
        assert (await client.get("/info")).status_code == 200
        refused(await client.get("/info", headers={"X-API-Key": "fvk_0123456789ab_" + "a" * 43}),
                401, "unauthorized")
