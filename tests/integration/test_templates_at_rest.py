"""Templates sealed at rest (app.storage.crypto), end to end on the shipped weights, against SQLite
and a real PostgreSQL:

1. the raw storage (the SQLite file with its -wal and -shm; a pg_dump and the PostgreSQL cluster's own
   files after a checkpoint) holds no stored embedding, as float32 or float16 bytes, raw or hex,
   whole or any 64 values of it, when templates are sealed; and holds every one when they are not
   (so the scan can fail), stored in the clear as before (sealed_counts {None: n});
2. a blob copied into another subject's row, into another template's row of its own subject, or
   with one byte flipped, is refused as 500 template_corrupted naming its subject, while the
   subjects beside it read and verify, search answers without the corrupted ones and the service
   keeps serving;
3. a database sealed with a key the service is not given (none, or another) leaves the subject
   routes 503 storage_unavailable and /health/ready's storage "unavailable", /verify and /embed
   serving, and the database untouched;
4. `facever templates rotate` SIGKILLed part-way while a real server enrols and verifies: every
   template decrypts at that moment, a rerun finishes the job, nothing acknowledged is lost, and
   the new key alone then serves.

The in-process service is tests/integration/real_service.py's; the server processes are
tests/integration/test_storage_faults.py's (its helpers are reused).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.storage import open_storage
from app.storage.crypto import TemplateCipher, new_key_text, parse_keys
from tests.integration.real_service import real_service
from tests.integration.test_storage_faults import server, wait_storage
from tests.service import storage_becomes
from tests.support.answers import refused
from tests.support.postgres import postgres_or_skip

pytestmark = [pytest.mark.data]

FACEVER = str(Path(sys.executable).with_name("facever"))
KEY1, KEY2, STRANGER = new_key_text("k1"), new_key_text("k2"), new_key_text("k9")
GALLERY = "rest"

COLIN = ("Colin_Powell/Colin_Powell_0001.jpg", "Colin_Powell/Colin_Powell_0002.jpg")
BUSH = "George_W_Bush/George_W_Bush_0001.jpg"
BLAIR = "Tony_Blair/Tony_Blair_0001.jpg"
RUMSFELD = "Donald_Rumsfeld/Donald_Rumsfeld_0001.jpg"
SCHROEDER = ("Gerhard_Schroeder/Gerhard_Schroeder_0001.jpg", "Gerhard_Schroeder/Gerhard_Schroeder_0002.jpg")
PROBES = {"alice": "Colin_Powell/Colin_Powell_0003.jpg", "carol": "Tony_Blair/Tony_Blair_0002.jpg",
          "dave": "Donald_Rumsfeld/Donald_Rumsfeld_0002.jpg", "erin": "Gerhard_Schroeder/Gerhard_Schroeder_0003.jpg"}
WINDOW = 64  # values: a run of 64 float16s (128 bytes) found by chance is out of the question


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def cipher(keys: str | None) -> TemplateCipher | None:
    return TemplateCipher(parse_keys(keys)) if keys else None


def photo(lfw_dir: Path, name: str) -> bytes:
    return (lfw_dir / "images" / name).read_bytes()


async def embed(client: httpx.AsyncClient, lfw_dir: Path, *names: str) -> list[dict]:
    response = await client.post("/embed", files=[("images", (f"{i}.jpg", photo(lfw_dir, name)))
                                                  for i, name in enumerate(names)])
    assert response.status_code == 200, response.text
    return response.json()["embeddings"]


async def post(client: httpx.AsyncClient, url: str, status: int, **kwargs: Any) -> dict:
    response = await client.post(url, **kwargs)
    assert response.status_code == status, (url, response.text)
    return response.json()


async def new_subject(client: httpx.AsyncClient, subject: str, *, embeddings: list[dict] | None = None,
                      image: bytes | None = None) -> list[str]:
    """A subject of GALLERY enrolled with embeddings (JSON) or an image (multipart); its template ids."""
    await post(client, f"/galleries/{GALLERY}/subjects", 201, json={"id": subject})
    faces = f"/galleries/{GALLERY}/subjects/{subject}/faces"
    if embeddings is not None:
        enrolled = await post(client, faces, 201, json={"embeddings": embeddings})
    else:
        enrolled = await post(client, faces, 201, files=[("images", ("face.jpg", image))])
    return [face["id"] for face in enrolled["added"]]


def read_stored(url: str, keys: str | None, subjects: list[str]) -> dict[tuple[str, str], np.ndarray]:
    """The embeddings the store holds, (subject, template id) -> float32, read through the store."""
    storage = open_storage(url, cipher(keys))
    try:
        return {(subject, template.id): np.asarray(template.embedding, np.float32)
                for subject in subjects for template in storage.get_subject(GALLERY, subject).templates}
    finally:
        storage.close()


def sealed_counts(url: str) -> dict[str | None, int]:
    storage = open_storage(url)
    try:
        return storage.sealed_counts()
    finally:
        storage.close()


def sql(url: str, statement: str, params: tuple = (), write: bool = False) -> list[tuple]:
    """A statement run straight on the database, as someone with access to it would."""
    storage = open_storage(url)
    try:
        with storage._transaction(write=write) as db:
            return db.execute(statement, params)
    finally:
        storage.close()


# -- 1 and 5. the raw storage ---------------------------------------------------------------------


@dataclass
class Store:
    url: str
    sqlite_path: Path | None = None
    postgres: Any = None  # tests.support.postgres.PostgresServer: a cluster of this test's own


@contextmanager
def store_of(backend: str, tmp_path: Path) -> Iterator[Store]:
    """A fresh store. PostgreSQL's is a cluster of its own: its files and write-ahead log then hold
    this test's data only (the session's server holds other tests' enrolments of the same photos)."""
    if backend == "sqlite":
        path = tmp_path / "facever.sqlite3"
        yield Store(f"sqlite:///{path}", sqlite_path=path)
        return
    with postgres_or_skip() as postgres:
        yield Store(postgres.url, postgres=postgres)


def raw_files(store: Store) -> dict[str, bytes]:
    """The database as bytes, as test_tenancy_api reads it: the SQLite file with its -wal and -shm;
    or a pg_dump, and every file of the PostgreSQL cluster (tables, indexes, write-ahead log) after
    a checkpoint."""
    if store.sqlite_path is not None:
        path = store.sqlite_path
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        data = {p.name: p.read_bytes() for p in files if p.exists()}
        assert data.get(path.name), "the SQLite file is empty"
        return {"sqlite files": b"\n".join(data.values())}
    postgres = store.postgres
    dump = subprocess.run([str(postgres.bindir / "pg_dump"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U",
                           "facever", "--no-owner", "facever"], capture_output=True, timeout=120)
    assert dump.returncode == 0, dump.stderr.decode()
    assert b"templates" in dump.stdout
    return {"pg_dump": dump.stdout, "cluster files": postgres.files()}


def needles(vector: np.ndarray) -> dict[str, bytes]:
    """What of a stored embedding must not be found: as float32 and float16 little-endian bytes, the
    whole vector and each run of WINDOW values, raw and as hex (a dump's bytea)."""
    found = {}
    for encoding in ("<f4", "<f2"):
        values = vector.astype(encoding)
        runs = {"whole": values} | {f"[{i}:{i + WINDOW}]": values[i : i + WINDOW]
                                    for i in range(0, len(values) - WINDOW + 1, WINDOW)}
        for name, run in runs.items():
            found[f"{encoding} {name}"] = run.tobytes()
            found[f"{encoding} {name} hex"] = run.tobytes().hex().encode()
    return found


def present(vector: np.ndarray, source: str) -> bytes:
    """How the whole float32 vector stored in the clear shows in a source: a dump writes bytea as hex."""
    data = vector.astype("<f4").tobytes()
    return data.hex().encode() if source == "pg_dump" else data


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize("sealed", [True, False], ids=["keys", "no-keys"])
async def test_raw_storage_holds_no_embedding_when_sealed(backend, sealed, tmp_path, lfw_dir) -> None:
    keys = KEY1 if sealed else None
    with store_of(backend, tmp_path) as store:
        async with real_service(storage_url=store.url, template_keys=keys) as (_, client):
            await storage_becomes(client, "ok")
            await post(client, "/galleries", 201, json={"id": GALLERY})
            alice, bob = (await embed(client, lfw_dir, *COLIN)), (await embed(client, lfw_dir, BUSH))
            enrolled = {"alice": await new_subject(client, "alice", embeddings=alice),
                        "bob": await new_subject(client, "bob", embeddings=bob),
                        "carol": await new_subject(client, "carol", image=photo(lfw_dir, BLAIR))}
            found = await post(client, f"/galleries/{GALLERY}/search", 200,
                               files={"image": ("probe.jpg", photo(lfw_dir, PROBES["alice"]))})
            assert found["match"]["subject"] == "alice", found
            stored = read_stored(store.url, keys, list(enrolled))
            files = raw_files(store)
        counts = sealed_counts(store.url)
        if store.postgres is not None:
            centroids = sql(store.url, "SELECT count(*) FROM subject_centroids") if sql(
                store.url, "SELECT 1 FROM pg_tables WHERE tablename = 'subject_centroids'") else [(0,)]
            pgvector = bool(sql(store.url, "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"))

    assert {key for key in stored} == {(s, t) for s, ids in enrolled.items() for t in ids}
    assert len(stored) == 4
    # The embeddings enrolled as embeddings are stored as /embed gave them (normalised again, to the
    # last bit of float32): both are looked for.
    sent = {}
    for subject, given in (("alice", alice), ("bob", bob)):
        for template_id, embedding in zip(enrolled[subject], given):
            sent[(subject, f"{template_id} as sent")] = np.asarray(embedding["embedding"], np.float32)
            assert np.allclose(stored[(subject, template_id)], sent[(subject, f"{template_id} as sent")], atol=1e-6)
    if sealed:
        assert counts == {"k1": 4}, counts
        for (subject, template_id), vector in (stored | sent).items():
            for what, needle in needles(vector).items():
                for source, data in files.items():
                    assert needle not in data, f"{subject}'s template {template_id} is in the {source} ({what})"
        if store.postgres is not None:
            assert centroids == [(0,)], "pgvector centroids kept beside sealed templates"
    else:  # in the clear, as before encryption: the same scan finds every one
        assert counts == {None: 4}, counts
        for (subject, template_id), vector in stored.items():
            for source, data in files.items():
                assert present(vector, source) in data, f"{subject}'s template {template_id} not in the {source}"
        if store.postgres is not None and pgvector:
            assert centroids == [(3,)], centroids


# -- 2. tampering -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_tampered_templates_are_refused_by_subject(backend, request, tmp_path, lfw_dir) -> None:
    url = f"sqlite:///{tmp_path}/facever.sqlite3" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    async with real_service(storage_url=url, template_keys=KEY1) as (_, client):
        await storage_becomes(client, "ok")
        await post(client, "/galleries", 201, json={"id": GALLERY})
        embeddings = dict(zip(("alice", "alice2", "bob", "carol", "dave", "erin", "erin2"),
                              await embed(client, lfw_dir, *COLIN, BUSH, BLAIR, RUMSFELD, *SCHROEDER)))
        probes = dict(zip(PROBES, await embed(client, lfw_dir, *PROBES.values())))
        ids = {"alice": await new_subject(client, "alice", embeddings=[embeddings["alice"], embeddings["alice2"]]),
               "bob": await new_subject(client, "bob", embeddings=[embeddings["bob"]]),
               "carol": await new_subject(client, "carol", embeddings=[embeddings["carol"]]),
               "dave": await new_subject(client, "dave", embeddings=[embeddings["dave"]]),
               "erin": await new_subject(client, "erin", embeddings=[embeddings["erin"], embeddings["erin2"]])}
        # (No search before the tampering: the index would answer from the centroids it read before.)

        blobs = dict(sql(url, "SELECT id, embedding FROM templates"))
        flipped = bytearray(blobs[ids["dave"][0]])
        flipped[len(flipped) // 2] ^= 0x01
        for template_id, blob in ((ids["carol"][0], blobs[ids["bob"][0]]),  # bob's blob in carol's row
                                  (ids["erin"][1], blobs[ids["erin"][0]]),  # erin's first in her second's row
                                  (ids["dave"][0], bytes(flipped))):  # one bit of dave's
            sql(url, "UPDATE templates SET embedding = ? WHERE id = ?", (bytes(blob), template_id), write=True)

        for subject in ("carol", "dave", "erin"):
            body = refused(await client.get(f"/galleries/{GALLERY}/subjects/{subject}"), 500, "template_corrupted",
                           repr(subject))
            assert KEY1.split(":")[1] not in json.dumps(body)
            refused(await client.post(f"/galleries/{GALLERY}/subjects/{subject}/verify",
                                      json={"embedding": probes.get(subject, probes["carol"])}),
                    500, "template_corrupted", repr(subject))
        # The subjects beside them read and verify; bob's blob still opens in its own row.
        for subject, probe, same in (("alice", probes["alice"], True), ("bob", probes["alice"], False),
                                     ("alice", probes["carol"], False)):
            got = await client.get(f"/galleries/{GALLERY}/subjects/{subject}")
            assert got.status_code == 200 and [face["id"] for face in got.json()["faces"]] == ids[subject], got.text
            verified = await post(client, f"/galleries/{GALLERY}/subjects/{subject}/verify", 200,
                                  json={"embedding": probe})
            assert verified["same"] is same, (subject, verified)
        # Search answers, and never with a corrupted template: carol and dave are left out, and erin
        # is searched on the one template of hers that opens.
        for subject, probe in probes.items():
            found = await post(client, f"/galleries/{GALLERY}/search", 200, json={"embedding": probe, "top_k": 10})
            candidates = {c["subject"]: c for c in found["candidates"]}
            assert not {"carol", "dave"} & set(candidates), (subject, found["candidates"])
            assert found["gallery_size"] == 3, found
            assert candidates["erin"]["templates"] == 1, found["candidates"]
            assert (found["match"] or {}).get("subject") == {"alice": "alice", "erin": "erin"}.get(subject), found
        # The gallery and its listing still count every row; the service serves on.
        gallery = (await client.get(f"/galleries/{GALLERY}")).json()
        assert (gallery["subjects"], gallery["templates"]) == (5, 7), gallery
        listed = (await client.get(f"/galleries/{GALLERY}/subjects")).json()["subjects"]
        assert [s["id"] for s in listed] == ["alice", "bob", "carol", "dave", "erin"], listed
        ready = await client.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["storage"] == "ok", ready.text
        assert (await client.post("/verify", json={"embedding1": probes["alice"], "embedding2": embeddings["alice"]}
                                  )).json()["same"] is True
        # What an operator does about it: delete the damaged template (or subject), then enrol again.
        deleted = await client.delete(f"/galleries/{GALLERY}/subjects/carol/faces/{ids['carol'][0]}")
        assert deleted.status_code == 200, deleted.text
        assert (await client.get(f"/galleries/{GALLERY}/subjects/carol")).status_code == 200
        await post(client, f"/galleries/{GALLERY}/subjects/carol/faces", 201,
                   json={"embeddings": [embeddings["carol"]]})
        assert (await client.delete(f"/galleries/{GALLERY}/subjects/dave")).status_code == 200
        found = await post(client, f"/galleries/{GALLERY}/search", 200, json={"embedding": probes["carol"]})
        assert found["match"]["subject"] == "carol", found


@pytest.mark.anyio
async def test_a_template_naming_a_key_not_given_is_refused_by_subject(tmp_path, lfw_dir) -> None:
    """Its key id edited in the database (or the rows rotated, by `facever templates rotate`, to a key
    the running service was not given): refused by subject as any other template that does not open,
    not as an internal error, and left out of the search."""
    url = f"sqlite:///{tmp_path}/facever.sqlite3"
    async with real_service(storage_url=url, template_keys=KEY1) as (_, client):
        await storage_becomes(client, "ok")
        await post(client, "/galleries", 201, json={"id": GALLERY})
        alice, bob, probe = await embed(client, lfw_dir, COLIN[0], BUSH, PROBES["alice"])
        await new_subject(client, "alice", embeddings=[alice])
        await new_subject(client, "bob", embeddings=[bob])
        sql(url, "UPDATE templates SET key_id = 'k7' WHERE subject_id = 'bob'", write=True)
        got = await client.get(f"/galleries/{GALLERY}/subjects/bob")
        refused(got, 500, "template_corrupted", "'k7'")
        assert repr("bob") in got.json()["error"]["message"], got.text
        found = await post(client, f"/galleries/{GALLERY}/search", 200, json={"embedding": probe})
        assert found["match"]["subject"] == "alice" and "bob" not in {c["subject"] for c in found["candidates"]}


# -- 3. a key not given ------------------------------------------------------------------------------


def snapshot(url: str, sqlite_path: Path | None) -> dict:
    """Every table's rows (and SQLite's file, byte for byte)."""
    if sqlite_path is not None:
        tables = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    else:
        tables = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    rows = {name: sorted(map(repr, sql(url, f"SELECT * FROM {name}"))) for (name,) in sql(url, tables)}
    assert rows["templates"]
    return {"rows": rows, "file": sqlite_path.read_bytes() if sqlite_path else None}


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_sealed_database_served_without_its_key_is_left_alone(backend, request, tmp_path, lfw_dir,
                                                                    caplog) -> None:
    sqlite_path = tmp_path / "facever.sqlite3" if backend == "sqlite" else None
    url = f"sqlite:///{sqlite_path}" if sqlite_path else request.getfixturevalue("postgres_url")
    async with real_service(storage_url=url, template_keys=KEY1) as (_, client):
        await storage_becomes(client, "ok")
        await post(client, "/galleries", 201, json={"id": GALLERY})
        alice = await embed(client, lfw_dir, *COLIN)
        await new_subject(client, "alice", embeddings=alice)
        await new_subject(client, "bob", image=photo(lfw_dir, BUSH))
    before = snapshot(url, sqlite_path)
    assert sealed_counts(url) == {"k1": 3}
    photos = {"image1": ("a.jpg", photo(lfw_dir, COLIN[0])), "image2": ("b.jpg", photo(lfw_dir, COLIN[1]))}
    subjects = f"/galleries/{GALLERY}/subjects"
    routes = [("GET", "/galleries", {}), ("POST", "/galleries", {"json": {"id": "new"}}),
              ("GET", f"/galleries/{GALLERY}", {}), ("GET", subjects, {}), ("GET", f"{subjects}/alice", {}),
              ("POST", subjects, {"json": {"id": "carol"}}),
              ("POST", f"{subjects}/alice/faces", {"json": {"embeddings": alice[:1]}}),
              ("POST", f"{subjects}/alice/verify", {"json": {"embedding": alice[1]}}),
              ("POST", f"/galleries/{GALLERY}/search", {"json": {"embedding": alice[1]}}),
              ("POST", f"/galleries/{GALLERY}/import", {"json": {"subjects": [{"id": "x", "embeddings": alice}]}}),
              ("DELETE", f"{subjects}/bob", {}), ("DELETE", f"/galleries/{GALLERY}", {})]
    for keys in (None, STRANGER):
        async with real_service(storage_url=url, template_keys=keys) as (_, client):
            await storage_becomes(client, "unavailable")
            for method, route, kwargs in routes:
                response = await client.request(method, route, **kwargs)
                body = refused(response, 503, "storage_unavailable")
                assert int(response.headers["Retry-After"]) > 0, (route, response.headers)
                assert KEY1.split(":")[1] not in json.dumps(body) and STRANGER.split(":")[1] not in json.dumps(body)
            verified = await post(client, "/verify", 200, files=photos)
            assert verified["same"] is True, verified
            assert len((await embed(client, lfw_dir, BUSH))) == 1
            assert (await client.get("/health/ready")).json()["storage"] == "unavailable"
            # The log says why, naming the key it needs by its id (and never a key).
            logged = [record.getMessage() for record in caplog.records if record.name == "facever.storage"]
            assert any("sealed with key 'k1'" in message for message in logged), logged
            assert not any(KEY1.split(":")[1] in message or STRANGER.split(":")[1] in message for message in logged)
            caplog.clear()
            assert snapshot(url, sqlite_path) == before, f"served with keys {keys and keys.split(':')[0]}"
        assert snapshot(url, sqlite_path) == before
    # With its key the database serves as before.
    async with real_service(storage_url=url, template_keys=f"{STRANGER},{KEY1}") as (_, client):
        await storage_becomes(client, "ok")
        verified = await post(client, f"{subjects}/alice/verify", 200, json={"embedding": alice[1]})
        assert verified["same"] is True, verified


# -- 4. rotation killed part-way under load -------------------------------------------------------------


def templates_cli(url: str, keys: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess | subprocess.Popen:
    command = [FACEVER, "templates", "--storage", url, *args]
    environment = {**os.environ, "FACEVER_TEMPLATE_KEYS": keys}
    environment.pop("FACEVER_TEMPLATE_KEYS_FILE", None)
    if kwargs.pop("background", False):
        return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300, **kwargs)


def status(url: str, keys: str) -> dict[str, int]:
    """`facever templates status`: templates by the key they are sealed with ("(clear)": none)."""
    done = templates_cli(url, keys, "status")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)["sealed_with"]


def all_subjects(client: httpx.Client) -> list[dict]:
    subjects, cursor = [], None
    while True:
        page = client.get(f"/galleries/{GALLERY}/subjects", params={"limit": 1000, **({"cursor": cursor} if cursor
                                                                                         else {})})
        assert page.status_code == 200, page.text
        subjects += page.json()["subjects"]
        if (cursor := page.json()["next_cursor"]) is None:
            return subjects


def assert_every_template_opens(base_url: str) -> dict[str, list[str]]:
    """GET of every subject (each decrypts all its templates): 200; their template ids."""
    opened = {}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for subject in all_subjects(client):
            got = client.get(f"/galleries/{GALLERY}/subjects/{subject['id']}")
            assert got.status_code == 200, (subject["id"], got.text)
            opened[subject["id"]] = [face["id"] for face in got.json()["faces"]]
            assert len(opened[subject["id"]]) == subject["templates"]
    return opened


@dataclass
class Load:
    """A thread that, in a loop, creates a subject and enrols two embeddings into it, then verifies
    one of the stored subjects (those being rotated) with its own embedding; it remembers what was
    acknowledged, and any other answer. `held` pauses it between two rounds."""

    base_url: str
    embedding: dict
    targets: list[tuple[str, dict]]  # (subject, an embedding of it)
    enrolled: dict[str, list[str]] = field(default_factory=dict)
    verified: int = 0
    unexpected: list[str] = field(default_factory=list)
    held: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            for number in range(1_000_000):
                if self.stop.is_set():
                    return
                with self.held:
                    self._round(client, number)
                time.sleep(0.002)  # lets a waiting `held` in

    def _round(self, client: httpx.Client, number: int) -> None:
        subjects = f"/galleries/{GALLERY}/subjects"
        subject = f"live-{number:05d}"
        created = client.post(subjects, json={"id": subject})
        enrolled = client.post(f"{subjects}/{subject}/faces", json={"embeddings": [self.embedding] * 2})
        if (created.status_code, enrolled.status_code) != (201, 201):
            self.unexpected.append(f"enrol {subject}: {created.status_code} {enrolled.status_code} "
                                   f"{enrolled.text[:300]}")
            return
        self.enrolled[subject] = [face["id"] for face in enrolled.json()["added"]]
        target, embedding = self.targets[number % len(self.targets)]
        verified = client.post(f"{subjects}/{target}/verify", json={"embedding": embedding})
        if verified.status_code != 200 or verified.json()["same"] is not True:
            self.unexpected.append(f"verify {target}: {verified.status_code} {verified.text[:300]}")
            return
        self.verified += 1

    def __enter__(self) -> Load:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


CLEAR_SUBJECTS, SEALED_SUBJECTS = 100, 250  # 100 templates in the clear, 500 sealed with k1


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_rotation_killed_part_way_under_load(backend, request, tmp_path, lfw_dir, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path}/facever.sqlite3" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    monkeypatch.delenv("FACEVER_TEMPLATE_KEYS_FILE", raising=False)
    monkeypatch.delenv("FACEVER_TEMPLATE_KEYS", raising=False)
    people = (*COLIN, BUSH, BLAIR, RUMSFELD, *SCHROEDER)

    def imported(base_url: str, prefix: str, count: int, per_subject: int) -> list[tuple[str, dict]]:
        body = {"subjects": [{"id": f"{prefix}{n:03d}", "embeddings": [embeddings[n % len(embeddings)]] * per_subject}
                             for n in range(count)]}
        answer = httpx.post(f"{base_url}/galleries/{GALLERY}/import", json=body, timeout=120)
        assert answer.status_code == 201 and answer.json()["templates"] == count * per_subject, answer.text
        return [(subject["id"], subject["embeddings"][0]) for subject in body["subjects"]]

    # A gallery from before encryption, in the clear; then more subjects sealed with k1.
    with server(url) as (base_url, _):
        wait_storage(base_url)
        embedded = httpx.post(f"{base_url}/embed", files=[("images", (f"{i}.jpg", photo(lfw_dir, name)))
                                                          for i, name in enumerate(people)], timeout=60)
        embeddings = embedded.json()["embeddings"]
        assert len(embeddings) == len(people), embedded.text
        assert httpx.post(f"{base_url}/galleries", json={"id": GALLERY}).status_code == 201
        clear = imported(base_url, "clear-", CLEAR_SUBJECTS, 1)
    monkeypatch.setenv("FACEVER_TEMPLATE_KEYS", KEY1)
    with server(url) as (base_url, _):
        wait_storage(base_url)
        sealed = imported(base_url, "k1-", SEALED_SUBJECTS, 2)
    before = CLEAR_SUBJECTS + 2 * SEALED_SUBJECTS
    assert status(url, KEY1) == {"(clear)": CLEAR_SUBJECTS, "k1": 2 * SEALED_SUBJECTS}

    both = f"{KEY2},{KEY1}"  # k2 seals; k1 still opens
    monkeypatch.setenv("FACEVER_TEMPLATE_KEYS", both)
    with server(url) as (base_url, _):
        wait_storage(base_url)
        targets = clear[::7] + sealed[::7]
        with Load(base_url, embeddings[0], targets) as load:
            while load.verified < 3:
                assert not load.unexpected, load.unexpected[:3]
                time.sleep(0.01)
            rotation = templates_cli(url, both, "rotate", "--to", "k2", "--batch", "20", background=True)
            first = rotation.stderr.readline().decode()
            rotation.send_signal(signal.SIGKILL)
            rotation.wait(30)
            rotation.stdout.close()
            rotation.stderr.close()
            assert rotation.returncode == -signal.SIGKILL
            assert first.startswith("sealed ") and "templates with 'k2'" in first, first
            with load.held:  # at that moment, between two of the load's rounds
                counts = status(url, both)
                acknowledged = sum(map(len, load.enrolled.values()))
                assert set(counts) <= {"(clear)", "k1", "k2"} and sum(counts.values()) == before + acknowledged, counts
                assert counts.get("(clear)", 0) + counts.get("k1", 0) > 0, f"rotation not cut part-way: {counts}"
                assert counts.get("k2", 0) >= 20 + acknowledged, counts
                opened = assert_every_template_opens(base_url)
                assert sum(map(len, opened.values())) == before + acknowledged
            mid = counts
            finished = templates_cli(url, both, "rotate", "--to", "k2", "--batch", "20")
            assert finished.returncode == 0, finished.stdout + finished.stderr
            assert set(json.loads(finished.stdout)["sealed_with"]) == {"k2"}, finished.stdout
            while load.verified < 20:  # the load goes on a little after the rotation
                assert load.thread.is_alive()
                time.sleep(0.01)
        assert not load.unexpected, load.unexpected[:3]
        acknowledged = sum(map(len, load.enrolled.values()))
        assert status(url, both) == {"k2": before + acknowledged}
        opened = assert_every_template_opens(base_url)
        for subject, template_ids in load.enrolled.items():
            assert opened[subject] == template_ids, subject
        assert sum(map(len, opened.values())) == before + acknowledged
        print(f"{backend}: killed at {mid} after {first.strip()!r}; {len(load.enrolled)} enrolments and "
              f"{load.verified} verifications served meanwhile")

    # The old key can go: k2 alone opens everything.
    monkeypatch.setenv("FACEVER_TEMPLATE_KEYS", KEY2)
    with server(url) as (base_url, _):
        wait_storage(base_url)
        opened = assert_every_template_opens(base_url)
        assert len(opened) == CLEAR_SUBJECTS + SEALED_SUBJECTS + len(load.enrolled)
        for subject, embedding in (clear[3], sealed[3]):
            verified = httpx.post(f"{base_url}/galleries/{GALLERY}/subjects/{subject}/verify",
                                  json={"embedding": embedding}, timeout=30)
            assert verified.status_code == 200 and verified.json()["same"] is True, verified.text
        found = httpx.post(f"{base_url}/galleries/{GALLERY}/search", json={"embedding": embeddings[0]}, timeout=30)
        assert found.status_code == 200 and found.json()["match"] is not None, found.text
