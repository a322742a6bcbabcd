"""Enrolled subjects through HTTP on the shipped weights, against SQLite and a real PostgreSQL:
every route, the enrolment check, the subject-level decision, model changes, write keys, and every
refusal with its documented code. Photos are LFW's."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.storage import open_storage
from app.storage.base import NewTemplate
from model.types import EmbeddingModel
from tests.integration.real_service import real_service
from tests.support.answers import refused
from tests.support.images import image_bytes

pytestmark = [pytest.mark.anyio, pytest.mark.data]

ALICE = [f"Colin_Powell/Colin_Powell_{n:04d}.jpg" for n in (1, 2, 3, 4)]
BOB = [f"George_W_Bush/George_W_Bush_{n:04d}.jpg" for n in (1, 2)]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def client(storage_url):
    async with real_service(storage_url=storage_url) as (_, client):
        yield client


def read(lfw_dir: Path, name: str) -> bytes:
    return (lfw_dir / "images" / name).read_bytes()


async def new_subject(client, gallery: str, subject: str) -> None:
    response = await client.post("/galleries", json={"id": gallery})
    assert response.status_code in (201, 409), response.text
    assert (await client.post(f"/galleries/{gallery}/subjects", json={"id": subject})).status_code == 201


async def enrol(client, gallery, subject, *images: bytes, **data):
    return await client.post(f"/galleries/{gallery}/subjects/{subject}/faces",
                             files=[("images", (f"{i}.jpg", image)) for i, image in enumerate(images)], data=data)


async def verify(client, gallery, subject, image: bytes, **data):
    return await client.post(f"/galleries/{gallery}/subjects/{subject}/verify", files={"image": ("p.jpg", image)},
                             data=data)


async def test_enrol_verify_delete_end_to_end(client, lfw_dir) -> None:
    await new_subject(client, "staff", "alice")
    first = await enrol(client, "staff", "alice", read(lfw_dir, ALICE[0]))
    assert first.status_code == 201, first.text
    assert first.json()["checked_against"] == 0 and first.json()["subject"]["templates"] == 1
    second = (await enrol(client, "staff", "alice", read(lfw_dir, ALICE[1]))).json()
    assert second["checked_against"] == 1 and second["subject"]["usable_templates"] == 2
    assert second["faces"][0]["faces_detected"] >= 1 and second["added"][0]["face"]["box"]

    same = (await verify(client, "staff", "alice", read(lfw_dir, ALICE[2]))).json()
    assert same["same"] is True and same["rule"] == "centroid" and same["templates_compared"] == 2
    assert same["operating_point"]["name"] == "far_1e-3" and same["operating_point"]["templates"] == 2
    assert same["score"] <= same["threshold"] and same["best_template"]["id"] in {
        t["id"] for t in second["subject"]["faces"]}
    other = (await verify(client, "staff", "alice", read(lfw_dir, BOB[0]))).json()
    assert other["same"] is False and other["score"] > other["threshold"]
    strict = (await verify(client, "staff", "alice", read(lfw_dir, ALICE[2]), operating_point="far_1e-4")).json()
    assert strict["operating_point"]["name"] == "far_1e-4" and strict["threshold"] < same["threshold"]

    subject = (await client.get("/galleries/staff/subjects/alice")).json()
    assert subject["templates"] == 2 and subject["needs_reenrolment"] is False
    assert all(face["usable"] and "embedding" not in face for face in subject["faces"])
    template = subject["faces"][0]["id"]
    deleted = await client.delete(f"/galleries/staff/subjects/alice/faces/{template}")
    assert deleted.json()["deleted"] == {"galleries": 0, "subjects": 0, "templates": 1}
    gone = await client.delete("/galleries/staff/subjects/alice")
    assert gone.json()["deleted"] == {"galleries": 0, "subjects": 1, "templates": 1}
    refused(await client.get("/galleries/staff/subjects/alice"), 404, "subject_not_found")
    refused(await verify(client, "staff", "alice", read(lfw_dir, ALICE[2])), 404, "subject_not_found")


async def test_enrolment_check_duplicates_and_override(client, lfw_dir) -> None:
    await new_subject(client, "check", "alice")
    assert (await enrol(client, "check", "alice", read(lfw_dir, ALICE[0]), read(lfw_dir, ALICE[1]))).status_code == 201
    refused(await enrol(client, "check", "alice", read(lfw_dir, BOB[0])), 409, "subject_mismatch", "allow_mismatch")
    refused(await enrol(client, "check", "alice", read(lfw_dir, ALICE[0])), 409, "duplicate_face")
    await client.post("/galleries/check/subjects", json={"id": "twice"})
    refused(await enrol(client, "check", "twice", read(lfw_dir, ALICE[1])), 409, "duplicate_face")
    # A first enrolment of several photos is checked among themselves, all or nothing.
    refused(await enrol(client, "check", "twice", read(lfw_dir, ALICE[3]), read(lfw_dir, BOB[1])), 409,
            "subject_mismatch", "of the request")
    assert (await client.get("/galleries/check/subjects/twice")).json()["templates"] == 0
    forced = await enrol(client, "check", "alice", read(lfw_dir, BOB[0]), allow_mismatch="true")
    assert forced.status_code == 201 and forced.json()["checked_against"] == 0
    listing = (await client.get("/galleries/check/subjects", params={"limit": 1})).json()
    assert [s["id"] for s in listing["subjects"]] == ["alice"] and listing["next_cursor"]
    rest = (await client.get("/galleries/check/subjects", params={"cursor": listing["next_cursor"]})).json()
    assert [s["id"] for s in rest["subjects"]] == ["twice"] and rest["next_cursor"] is None
    assert (await client.delete("/galleries/check")).json()["deleted"] == {"galleries": 1, "subjects": 2,
                                                                           "templates": 3}
    refused(await client.get("/galleries/check"), 404, "gallery_not_found")


async def test_embeddings_in_place_of_images(client, lfw_dir) -> None:
    await new_subject(client, "emb", "alice")
    embedded = (await client.post("/embed", files=[("images", ("a.jpg", read(lfw_dir, name))) for name in ALICE[:3]]
                                  )).json()["embeddings"]
    response = await client.post("/galleries/emb/subjects/alice/faces", json={"embeddings": embedded[:2]})
    assert response.status_code == 201, response.text
    assert response.json()["faces"] == [None, None] and response.json()["added"][0]["face"] is None
    probe = await client.post("/galleries/emb/subjects/alice/verify", json={"embedding": embedded[2]})
    assert probe.json()["same"] is True and probe.json()["face"] is None
    as_text = await client.post("/galleries/emb/subjects/alice/verify",  # a plain multipart field, as curl -F sends
                                files=[("embedding", (None, json.dumps(embedded[2])))])
    assert as_text.json()["score"] == probe.json()["score"]
    foreign = {**embedded[2], "model": {**embedded[2]["model"], "version": "0.0"}}
    refused(await client.post("/galleries/emb/subjects/alice/verify", json={"embedding": foreign}), 422,
            "incompatible_embedding")
    refused(await client.post("/galleries/emb/subjects/alice/faces", files=[("embeddings", (None, "[1, 2"))]), 422,
            "invalid_embedding")
    stretched = {**embedded[2], "embedding": [2 * v for v in embedded[2]["embedding"]]}
    refused(await client.post("/galleries/emb/subjects/alice/faces", json={"embeddings": [stretched]}), 422,
            "invalid_embedding")


async def test_refusals(client, lfw_dir) -> None:
    await new_subject(client, "bad", "alice")
    photo = read(lfw_dir, ALICE[0])
    refused(await client.post("/galleries", json={"id": "bad"}), 409, "gallery_exists")
    refused(await client.post("/galleries/bad/subjects", json={"id": "alice"}), 409, "subject_exists")
    refused(await client.post("/galleries", json={"id": "../etc"}), 422, "invalid_request", "id")
    refused(await client.post("/galleries", json={"id": "ok", "colour": "red"}), 422, "invalid_request",
            "unknown field")
    refused(await client.get("/galleries/nope/subjects"), 404, "gallery_not_found")
    refused(await enrol(client, "nope", "alice", photo), 404, "gallery_not_found")
    refused(await enrol(client, "bad", "ghost", photo), 404, "subject_not_found")
    refused(await client.get("/galleries/bad%20id"), 422, "invalid_request")
    refused(await client.get("/galleries/bad/subjects", params={"cursor": "%%%"}), 422, "invalid_request", "cursor")
    refused(await verify(client, "bad", "alice", photo), 409, "subject_empty")
    refused(await enrol(client, "bad", "alice", b"not an image"), 400, "invalid_image")
    refused(await enrol(client, "bad", "alice", image_bytes((120, 130, 140), (200, 200))), 422, "no_face_detected")
    two = side_by_side(lfw_dir, ALICE[0], BOB[0])
    refused(await enrol(client, "bad", "alice", two, face_policy="reject"), 422, "multiple_faces")
    refused(await client.post("/galleries/bad/subjects/alice/faces?face_policy=reject",
                              files=[("images", ("t.jpg", two))]), 422, "multiple_faces")
    refused(await client.post("/galleries/bad/subjects/alice/faces?treshold=1",
                              files=[("images", ("t.jpg", photo))]), 422, "invalid_request", "treshold")
    refused(await client.post("/galleries/bad/subjects/alice/faces", files=[("images", (None, "x"))]), 422,
            "invalid_request", "file part")
    refused(await client.post("/galleries/bad/subjects/alice/faces", json={}), 422, "invalid_request")
    refused(await client.post("/galleries/bad/subjects/alice/verify", json={}), 422, "invalid_request")
    refused(await client.delete("/galleries/bad/subjects/alice/faces/" + "0" * 32), 404, "template_not_found")


async def test_templates_of_another_model_are_never_compared(client, lfw_dir, storage_url) -> None:
    await new_subject(client, "old", "alice")
    store = open_storage(storage_url)
    old_model = EmbeddingModel("fused-dlib-sface-yunet-int8", "0.9.0", "plain", "int8")
    vector = np.ones(256, np.float32) / 16
    store.add_templates("old", "alice", [NewTemplate(vector, old_model)], lambda stored: None, 10)
    store.close()
    subject = (await client.get("/galleries/old/subjects/alice")).json()
    assert subject["needs_reenrolment"] is True and subject["faces"][0]["usable"] is False
    refused(await verify(client, "old", "alice", read(lfw_dir, ALICE[0])), 409, "reenrolment_needed")
    assert (await enrol(client, "old", "alice", read(lfw_dir, ALICE[0]))).json()["checked_against"] == 0
    probe = (await verify(client, "old", "alice", read(lfw_dir, ALICE[1]))).json()
    assert probe["templates_compared"] == 1 and probe["templates_skipped"] == 1 and probe["same"] is True


async def test_info_and_health_report_subjects(client) -> None:
    ready = (await client.get("/health/ready")).json()
    assert ready["storage"] == "ok"
    subjects = (await client.get("/info")).json()["service"]["subjects"]
    assert subjects["rule"] == "centroid" and subjects["enrol_operating_point"] == "far_1e-4"
    assert {row["templates"] for row in subjects["operating_points"]} >= {1, 2, 3, 5}


async def test_write_keys(storage_url, lfw_dir) -> None:
    async with real_service(storage_url=storage_url, api_keys=("reader",), write_api_keys=("writer",)) as (_, client):
        refused(await client.post("/galleries", json={"id": "keys"}), 401, "unauthorized")
        refused(await client.post("/galleries", json={"id": "keys"}, headers={"X-API-Key": "reader"}), 403,
                "forbidden")
        writer = {"X-API-Key": "writer"}
        assert (await client.post("/galleries", json={"id": "keys"}, headers=writer)).status_code == 201
        assert (await client.get("/galleries/keys", headers={"X-API-Key": "reader"})).status_code == 200
        refused(await client.delete("/galleries/keys", headers={"X-API-Key": "reader"}), 403, "forbidden")
        assert (await client.delete("/galleries/keys", headers=writer)).status_code == 200


def side_by_side(lfw_dir: Path, *names: str) -> bytes:
    canvas = Image.new("RGB", (250 * len(names), 250))
    for index, name in enumerate(names):
        canvas.paste(Image.open(lfw_dir / "images" / name).convert("RGB"), (250 * index, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


async def test_subject_full(storage_url, lfw_dir) -> None:
    async with real_service(storage_url=storage_url, max_templates_per_subject=2) as (_, client):
        await new_subject(client, "full", "alice")
        assert (await enrol(client, "full", "alice", read(lfw_dir, ALICE[0]), read(lfw_dir, ALICE[1]))).status_code == 201
        refused(await enrol(client, "full", "alice", read(lfw_dir, ALICE[2])), 409, "subject_full", "at most 2")


# -- 1:N search -----------------------------------------------------------------------------------

PEOPLE = {"colin": "Colin_Powell", "george": "George_W_Bush", "tony": "Tony_Blair", "gerhard": "Gerhard_Schroeder",
          "donald": "Donald_Rumsfeld"}
STRANGER = "Aaron_Peirsol/Aaron_Peirsol_0001.jpg"


def lfw_photo(lfw_dir: Path, person: str, number: int) -> bytes:
    return (lfw_dir / "images" / person / f"{person}_{number:04d}.jpg").read_bytes()


async def search(client, gallery: str, image: bytes, **data):
    return await client.post(f"/galleries/{gallery}/search", files={"image": ("p.jpg", image)}, data=data)


async def test_search_finds_the_enrolled_and_nobody_for_a_stranger(client, lfw_dir, storage_url) -> None:
    assert (await client.post("/galleries", json={"id": "people"})).status_code == 201
    empty = (await search(client, "people", lfw_photo(lfw_dir, "Colin_Powell", 5))).json()
    assert empty["match"] is None and empty["candidates"] == [] and empty["gallery_size"] == 0
    for subject, person in PEOPLE.items():
        await client.post("/galleries/people/subjects", json={"id": subject})
        enrolled = await enrol(client, "people", subject, lfw_photo(lfw_dir, person, 1), lfw_photo(lfw_dir, person, 2))
        assert enrolled.status_code == 201, enrolled.text

    found = (await search(client, "people", lfw_photo(lfw_dir, "Colin_Powell", 5), top_k="3")).json()
    assert found["match"]["subject"] == "colin" and found["gallery_size"] == 5 and len(found["candidates"]) == 3
    assert found["candidates"][0]["subject"] == "colin" and found["candidates"][0]["templates"] == 2
    assert [c["same"] for c in found["candidates"]] == [True, False, False]
    point = found["operating_point"]
    assert point["name"] == "fpir_1e-3" and point["measured"]["gallery_size"] == 100 and not point["extrapolated"]

    stranger = (await search(client, "people", (lfw_dir / "images" / STRANGER).read_bytes())).json()
    assert stranger["match"] is None and all(not c["same"] for c in stranger["candidates"])

    embedded = (await client.post("/embed", files={"images": ("t.jpg", lfw_photo(lfw_dir, "Tony_Blair", 7))})).json()
    by_embedding = await client.post("/galleries/people/search", json={"embedding": embedded["embeddings"][0]})
    assert by_embedding.json()["match"]["subject"] == "tony"

    # A subject deleted, by this replica or another writing to the same database, is never found again.
    assert (await client.delete("/galleries/people/subjects/colin")).status_code == 200
    gone = (await search(client, "people", lfw_photo(lfw_dir, "Colin_Powell", 5))).json()
    assert gone["match"] is None or gone["match"]["subject"] != "colin"
    assert "colin" not in {c["subject"] for c in gone["candidates"]} and gone["gallery_size"] == 4
    other_replica = open_storage(storage_url)
    other_replica.delete_subject("people", "tony")
    other_replica.close()
    after = (await client.post("/galleries/people/search", json={"embedding": embedded["embeddings"][0]})).json()
    assert "tony" not in {c["subject"] for c in after["candidates"]} and after["match"] is None


async def test_search_refusals(client, lfw_dir) -> None:
    photo = lfw_photo(lfw_dir, "Colin_Powell", 5)
    refused(await search(client, "nobody-here", photo), 404, "gallery_not_found")
    await client.post("/galleries", json={"id": "refuse"})
    refused(await search(client, "refuse", photo, operating_point="fpir_1e-9"), 422, "invalid_request", "fpir_1e-9")
    refused(await search(client, "refuse", photo, top_k="0"), 422, "invalid_request", "top_k")
    refused(await search(client, "refuse", photo, threshold="0.5", operating_point="fpir_1e-2"), 422, "invalid_request")
    refused(await search(client, "refuse", b"not an image"), 400, "invalid_image")
    explicit = (await search(client, "refuse", photo, threshold="0.5")).json()
    assert explicit["operating_point"] is None and explicit["match"] is None
    info = (await client.get("/info")).json()["service"]["subjects"]["search"]
    assert info["default"] == "fpir_1e-3" and [row["gallery_size"] for row in info["measured"]] == [100, 1000, 1680]


async def test_import_in_bulk(client, lfw_dir) -> None:
    await client.post("/galleries", json={"id": "bulk"})
    embedded = (await client.post("/embed", files=[("images", ("a.jpg", lfw_photo(lfw_dir, "Colin_Powell", n)))
                                                   for n in (1, 2, 3)])).json()["embeddings"]
    body = {"subjects": [{"id": "colin", "embeddings": embedded[:2]}, {"id": "c2", "embeddings": embedded[2:]}]}
    imported = await client.post("/galleries/bulk/import", json=body)
    assert imported.status_code == 201 and imported.json()["templates"] == 3
    assert (await client.get("/galleries/bulk")).json()["templates"] == 3
    refused(await client.post("/galleries/bulk/import", json=body), 409, "conflict")  # all or nothing
    assert (await client.get("/galleries/bulk")).json()["subjects"] == 2
    foreign = {**embedded[0], "model": {**embedded[0]["model"], "name": "other"}}
    refused(await client.post("/galleries/bulk/import", json={"subjects": [{"id": "x", "embeddings": [foreign]}]}),
            422, "incompatible_embedding", "subjects[0].embeddings[0]")
    refused(await client.post("/galleries/bulk/import", json={"subjects": [{"id": "y", "embeddings": [embedded[0]]},
                                                                          {"id": "y", "embeddings": [embedded[1]]}]}),
            422, "invalid_request", "twice")
