"""Duplicate identities through HTTP on the shipped weights and LFW photos, against SQLite and a real
PostgreSQL: the enrolment's duplicate check (a gallery option with a per-request override: refuse,
report, off), the flag and its clearing, and the gallery's report as a job (progress, pages,
cancellation, deletion), with every refusal's code. The key's reach is in test_tenancy_api."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import anyio
import numpy as np
import pytest

from app.services.duplicates import DuplicateService, ReportRunner
from app.storage import open_storage
from app.storage.base import STALE_S, Job
from app.storage.search_index import SearchIndex
from tests.integration.real_service import real_service
from tests.support.answers import refused

pytestmark = [pytest.mark.anyio, pytest.mark.data]

POWELL = [f"Colin_Powell/Colin_Powell_{n:04d}.jpg" for n in (1, 2, 3)]
BUSH = "George_W_Bush/George_W_Bush_0001.jpg"
CHAVEZ = "Hugo_Chavez/Hugo_Chavez_0001.jpg"
BLAIR = "Tony_Blair/Tony_Blair_0001.jpg"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def service(storage_url):
    async with real_service(storage_url=storage_url) as (app, client):
        yield app, client


@pytest.fixture
def client(service):
    return service[1]


def read(lfw_dir: Path, name: str) -> bytes:
    return (lfw_dir / "images" / name).read_bytes()


async def gallery(client, **policy) -> str:
    name = f"g-{uuid.uuid4().hex[:8]}"
    response = await client.post("/galleries", json={"id": name, **policy})
    assert response.status_code == 201, response.text
    return name


async def enrol(client, gallery_id: str, subject: str, image: bytes, **options):
    assert (await client.post(f"/galleries/{gallery_id}/subjects", json={"id": subject})).status_code == 201
    return await client.post(f"/galleries/{gallery_id}/subjects/{subject}/faces",
                             files=[("images", ("face.jpg", image))], data=options)


async def enrolled(client, gallery_id: str, subject: str, image: bytes, **options) -> dict:
    response = await enrol(client, gallery_id, subject, image, **options)
    assert response.status_code == 201, response.text
    return response.json()


async def finished(client, gallery_id: str, job_id: str, **params) -> dict:
    for _ in range(400):
        response = await client.get(f"/galleries/{gallery_id}/duplicates/{job_id}", params=params)
        assert response.status_code == 200, response.text
        if response.json()["state"] != "running":
            return response.json()
        await anyio.sleep(0.05)
    raise AssertionError("the report did not finish")


async def test_refuse_names_the_match_and_stores_nothing(client, lfw_dir) -> None:
    g = await gallery(client, duplicate_check="refuse")
    assert (await client.get(f"/galleries/{g}")).json()["duplicate_check"] == "refuse"
    await enrolled(client, g, "powell", read(lfw_dir, POWELL[0]))
    await enrolled(client, g, "bush", read(lfw_dir, BUSH))
    body = refused(await enrol(client, g, "powell-again", read(lfw_dir, POWELL[1])), 409, "duplicate_identity",
                   "'powell'")
    matches = body["error"]["matches"]
    assert [match["subject"] for match in matches] == ["powell"]
    assert matches[0]["score"] <= matches[0]["threshold"]
    assert (await client.get(f"/galleries/{g}/subjects/powell-again")).json()["templates"] == 0
    audit = (await client.get("/audit", params={"gallery": g, "subject": "powell-again"})).json()["entries"]
    assert [(e["action"], e["status"], e["matched"]) for e in audit][-1] == ("subject.duplicates", 409, True)
    # Someone new is enrolled; and a subject's later faces are not checked against the others.
    assert (await enrolled(client, g, "chavez", read(lfw_dir, CHAVEZ)))["possible_duplicates"] == []
    again = await client.post(f"/galleries/{g}/subjects/powell/faces", files=[("images", ("f.jpg",
                                                                                       read(lfw_dir, POWELL[2])))])
    assert again.status_code == 201 and again.json()["possible_duplicates"] == []


async def test_report_mode_stores_and_flags_until_a_reviewer_clears_it(client, lfw_dir) -> None:
    g = await gallery(client, duplicate_check="refuse")
    await enrolled(client, g, "powell", read(lfw_dir, POWELL[0]))
    body = await enrolled(client, g, "powell-2", read(lfw_dir, POWELL[1]), duplicate_check="report")
    assert [match["subject"] for match in body["possible_duplicates"]] == ["powell"]
    assert body["subject"]["possible_duplicates"] == body["possible_duplicates"]
    listed = (await client.get(f"/galleries/{g}/subjects")).json()["subjects"]
    assert {s["id"]: len(s["possible_duplicates"]) for s in listed} == {"powell": 0, "powell-2": 1}
    cleared = await client.delete(f"/galleries/{g}/subjects/powell-2/duplicates")
    assert cleared.status_code == 200 and cleared.json()["possible_duplicates"] == []
    assert (await client.get(f"/galleries/{g}/subjects/powell-2")).json()["possible_duplicates"] == []
    refused(await client.delete(f"/galleries/{g}/subjects/nobody/duplicates"), 404, "subject_not_found")
    audit = (await client.get("/audit", params={"gallery": g, "subject": "powell-2"})).json()["entries"]
    assert [(e["action"], e["matched"]) for e in audit][-2:] == [("subject.enrol", True),
                                                                 ("subject.clear_duplicates", None)]


async def test_off_by_default_and_per_request(client, lfw_dir) -> None:
    g = await gallery(client)
    assert (await client.get(f"/galleries/{g}")).json()["duplicate_check"] == "off"
    await enrolled(client, g, "powell", read(lfw_dir, POWELL[0]))
    assert (await enrolled(client, g, "powell-2", read(lfw_dir, POWELL[1])))["possible_duplicates"] == []
    refused(await enrol(client, g, "powell-3", read(lfw_dir, POWELL[2]), duplicate_check="refuse"), 409,
            "duplicate_identity", "'powell")
    refused(await enrol(client, g, "powell-4", read(lfw_dir, POWELL[2]), duplicate_check="maybe"), 422,
            "invalid_request", "duplicate_check")
    # The policy is replaced whole: PATCH sets it, and leaving it out turns it off again.
    patched = await client.patch(f"/galleries/{g}", json={"duplicate_check": "report"})
    assert patched.json()["duplicate_check"] == "report"
    assert (await client.patch(f"/galleries/{g}", json={})).json()["duplicate_check"] == "off"


async def test_the_gallery_report_in_pages(client, lfw_dir) -> None:
    g = await gallery(client)
    for subject, photo in (("powell", POWELL[0]), ("powell-2", POWELL[1]), ("powell-3", POWELL[2]),
                           ("bush", BUSH), ("blair", BLAIR)):
        await enrolled(client, g, subject, read(lfw_dir, photo))
    started = await client.post(f"/galleries/{g}/duplicates", json={})
    assert started.status_code == 202, started.text
    assert started.json()["state"] == "running" and started.json()["operating_point"] == "fpir_1e-3"
    report = await finished(client, g, started.json()["id"], limit=2)
    assert report["state"] == "done" and report["gallery_size"] == 5 and report["pairs_found"] == 3
    assert report["progress"]["done"] == report["progress"]["total"] > 0
    first_page = report["pairs"]
    assert len(first_page) == 2 and report["next_cursor"]
    rest = (await client.get(f"/galleries/{g}/duplicates/{report['id']}",
                             params={"limit": 2, "cursor": report["next_cursor"]})).json()
    assert rest["next_cursor"] is None
    pairs = first_page + rest["pairs"]
    assert {frozenset((p["first"], p["second"])) for p in pairs} == {
        frozenset(pair) for pair in (("powell", "powell-2"), ("powell", "powell-3"), ("powell-2", "powell-3"))}
    assert [p["score"] for p in pairs] == sorted(p["score"] for p in pairs)
    assert all(p["score"] <= p["threshold"] for p in pairs)
    # A deleted subject leaves the reports; a finished report is deleted with its pairs.
    assert (await client.delete(f"/galleries/{g}/subjects/powell-3")).status_code == 200
    kept = (await client.get(f"/galleries/{g}/duplicates/{report['id']}", params={"limit": 10})).json()["pairs"]
    assert [{p["first"], p["second"]} for p in kept] == [{"powell", "powell-2"}]
    assert (await client.delete(f"/galleries/{g}/duplicates/{report['id']}")).status_code == 200
    refused(await client.get(f"/galleries/{g}/duplicates/{report['id']}"), 404, "job_not_found")


async def test_report_refusals(client) -> None:
    g = await gallery(client)
    refused(await client.post(f"/galleries/{g}/duplicates", json={"operating_point": "nope"}), 422,
            "invalid_request", "nope")
    refused(await client.post(f"/galleries/{g}/duplicates", json={"extra": 1}), 422, "invalid_request", "extra")
    refused(await client.post("/galleries/no-such-gallery/duplicates", json={}), 404, "gallery_not_found")
    refused(await client.get(f"/galleries/{g}/duplicates/no-such-job"), 404, "job_not_found")
    refused(await client.delete(f"/galleries/{g}/duplicates/no-such-job"), 404, "job_not_found")
    job = (await client.post(f"/galleries/{g}/duplicates", json={"threshold": 0.5})).json()
    assert job["threshold"] == 0.5 and job["operating_point"] is None
    done = await finished(client, g, job["id"])
    assert done["gallery_size"] == 0 and done["pairs"] == [] and done["next_cursor"] is None
    for cursor in ("!!", base64.urlsafe_b64encode(b"9" * 40).decode(), base64.urlsafe_b64encode(b"alice").decode()):
        refused(await client.get(f"/galleries/{g}/duplicates/{job['id']}", params={"cursor": cursor}), 422,
                "invalid_request", "cursor")
    other = await gallery(client)  # a job is found only under its own gallery
    refused(await client.get(f"/galleries/{other}/duplicates/{job['id']}"), 404, "job_not_found")


async def test_a_job_asked_to_stop_ends_cancelled_and_one_without_its_replica_reads_interrupted(
        service, storage_url, lfw_dir) -> None:
    app, client = service
    g = await gallery(client)
    embedded = (await client.post("/embed", files=[("images", ("f.jpg", read(lfw_dir, BUSH)))])).json()
    model = embedded["embeddings"][0]["model"]
    vectors = np.random.default_rng(0).normal(size=(300, len(embedded["embeddings"][0]["embedding"])))
    subjects = [{"id": f"s{i}", "embeddings": [{"embedding": (v / np.linalg.norm(v)).tolist(), "model": model}]}
                for i, v in enumerate(vectors)]
    assert (await client.post(f"/galleries/{g}/import", json={"subjects": subjects})).status_code == 201
    storage = open_storage(storage_url)
    try:
        at = time.time()
        asked = Job("stop-me", g, "duplicates", "test", {"operating_point": "fpir_1e-3"}, "running", at, at)
        storage.create_job(asked)
        storage.cancel_job(g, "stop-me")
        reports = DuplicateService(storage, app.state.verifier, SearchIndex(), ReportRunner())
        reports._report(asked, app.state.verifier.search_decision())  # sees the request at its first block
        body = (await client.get(f"/galleries/{g}/duplicates/stop-me")).json()
        assert body["state"] == "cancelled" and body["cancel_requested"] and body["pairs"] == []

        lost = Job("lost", g, "duplicates", "test", {}, "running", at - 2 * STALE_S, at - 2 * STALE_S)
        storage.create_job(lost)
        assert (await client.get(f"/galleries/{g}/duplicates/lost")).json()["state"] == "interrupted"
        assert (await client.delete(f"/galleries/{g}/duplicates/lost")).status_code == 200  # gone, not asked
        refused(await client.get(f"/galleries/{g}/duplicates/lost"), 404, "job_not_found")
    finally:
        storage.close()
