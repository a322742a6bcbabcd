"""A gallery's retention and consent policy, the dry run of its sweep, and a subject's export, over
HTTP on a fake model and a SQLite file."""

from __future__ import annotations

import asyncio

import pytest

from tests.api.conftest import make_app
from tests.service import running, storage_becomes
from tests.support.answers import refused
from tests.support.images import image_bytes

pytestmark = pytest.mark.anyio
ROOT = {"X-API-Key": "root"}


async def test_consent_retention_and_export(tmp_path):
    app = make_app(storage_url=f"sqlite:///{tmp_path}/s.sqlite3", write_api_keys=("root",), enrol_min_quality=None)
    async with running(app) as client:
        await storage_becomes(client, "ok")
        made = await client.post("/galleries", headers=ROOT, json={
            "id": "signup", "require_consent": True, "max_inactive_days": 30, "max_age_days": 365})
        assert made.status_code == 201 and made.json()["require_consent"] and made.json()["max_inactive_days"] == 30
        assert (await client.post("/galleries/signup/subjects", headers=ROOT, json={"id": "alice"})).status_code == 201
        face = {"images": ("a.jpg", image_bytes())}
        refused(await client.post("/galleries/signup/subjects/alice/faces", headers=ROOT, files=face),
                422, "consent_required", "consent_ref")
        enrolled = await client.post("/galleries/signup/subjects/alice/faces", headers=ROOT, files=face,
                                     data={"consent_ref": "form-17"})
        assert enrolled.status_code == 201, enrolled.text
        subject = enrolled.json()["subject"]
        assert subject["consent_ref"] == "form-17" and subject["expires_at"] and subject["last_active_at"]

        soon = await client.get("/galleries/signup/expiring", headers=ROOT)
        assert soon.status_code == 200 and soon.json()["subjects"] == []
        later = await client.get("/galleries/signup/expiring", headers=ROOT, params={"at": "2199-01-01T00:00:00Z"})
        assert [s["subject"] for s in later.json()["subjects"]] == ["alice"]
        assert (await client.get("/galleries/signup/subjects/alice", headers=ROOT)).status_code == 200  # kept

        reader = (await client.post("/keys", headers=ROOT, json={"name": "r", "scopes": ["read"],
                                                                 "galleries": ["signup"]})).json()["key"]
        exported = await client.get("/galleries/signup/subjects/alice/export", headers={"X-API-Key": reader})
        assert exported.status_code == 200
        body = exported.json()
        assert body["subject"]["consent_ref"] == "form-17" and body["faces"][0]["embedding"] is None
        enrol_entry = next(e for e in body["audit"] if e["action"] == "subject.enrol")
        assert enrol_entry["consent_ref"] == "form-17" and enrol_entry["subject_id"] == "alice"
        refused(await client.get("/galleries/signup/subjects/alice/export", headers={"X-API-Key": reader},
                                 params={"embeddings": "true"}), 403, "forbidden", "admin")
        full = await client.get("/galleries/signup/subjects/alice/export", headers=ROOT, params={"embeddings": "true"})
        assert len(full.json()["faces"][0]["embedding"]) == 4
        actions = [e["action"] for e in (await client.get("/audit", headers=ROOT,
                                                          params={"subject": "alice"})).json()["entries"]]
        assert actions[-2:] == ["subject.export", "subject.export"]

        patched = await client.patch("/galleries/signup", headers=ROOT, json={"max_age_days": 1})
        assert patched.status_code == 200 and patched.json()["max_inactive_days"] is None
        assert not patched.json()["require_consent"]


async def test_the_service_sweeps_what_its_gallery_no_longer_keeps(tmp_path, monkeypatch):
    monkeypatch.setattr("app.storage.supervisor.CHECK_S", 0.1)
    monkeypatch.setattr("app.storage.supervisor.SWEEP_EVERY_S", 0.1)
    app = make_app(storage_url=f"sqlite:///{tmp_path}/s.sqlite3", write_api_keys=("root",), enrol_min_quality=None)
    async with running(app) as client:
        await storage_becomes(client, "ok")
        await client.post("/galleries", headers=ROOT, json={"id": "brief", "max_age_days": 1 / 86400})  # 1 s
        await client.post("/galleries/brief/subjects", headers=ROOT, json={"id": "alice"})
        enrolled = await client.post("/galleries/brief/subjects/alice/faces", headers=ROOT,
                                     files={"images": ("a.jpg", image_bytes())})
        assert enrolled.status_code == 201, enrolled.text
        for _ in range(100):
            if (await client.get("/galleries/brief/subjects/alice", headers=ROOT)).status_code == 404:
                break
            await asyncio.sleep(0.05)
        refused(await client.get("/galleries/brief/subjects/alice", headers=ROOT), 404, "subject_not_found")
        entries = (await client.get("/audit", headers=ROOT, params={"action": "subject.expire"})).json()["entries"]
        assert [(e["key_id"], e["gallery"], e["subject"]) for e in entries] == [("retention", "brief", "alice")]
