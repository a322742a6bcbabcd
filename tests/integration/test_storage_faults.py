"""Enrolments survive what production does to a service: the server process killed with SIGKILL
mid-write, the PostgreSQL server restarted under load, two replicas writing one subject at once, and
a database that is down when the service starts. Every enrolment answered 2xx is there afterwards
and complete; none that was not answered is half there. The real server runs in a subprocess on the
shipped weights (bench/server.py starts it as `make serve` does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bench.server import HOST, free_port, wait_ready
from tests.integration.real_service import ENCODER_DIR, skip_unless_shipped_model

pytestmark = [pytest.mark.data, pytest.mark.slow]

PHOTO = "Colin_Powell/Colin_Powell_0001.jpg"
PER_ENROLMENT = 2  # embeddings per request: a half-written enrolment would show as an odd count


@contextmanager
def server(storage_url: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """The real service (its log in a temporary file, shown when a test fails), and its process."""
    skip_unless_shipped_model()
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    environment = {**os.environ, "FACEVER_STORAGE_URL": storage_url,
                   "FACEVER_WEIGHTS_DIR": str(ENCODER_DIR)}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([str(Path(sys.executable).with_name("facever")), "serve", "--host", HOST,
                                    "--port", str(port)], env=environment, stdout=log, stderr=log)
        try:
            wait_ready(process, base_url, 180)
            yield base_url, process
        except BaseException:
            log.seek(0)
            print(log.read().decode(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()


def embedding_of(base_url: str, lfw_dir: Path) -> dict:
    response = httpx.post(f"{base_url}/embed", files={"images": ("p.jpg", (lfw_dir / "images" / PHOTO).read_bytes())},
                          timeout=30)
    return response.json()["embeddings"][0]


def wait_storage(base_url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{base_url}/health/ready", timeout=5).json()["storage"] != "ok":
        assert time.monotonic() < deadline, "storage never became ok"
        time.sleep(0.1)


class Enrollers:
    """Threads that create subjects and enrol PER_ENROLMENT embeddings into each, in a loop, and
    remember what was acknowledged; any status besides 201 and 503 storage_unavailable (or the
    connection dropping, when the server is killed) is an error."""

    def __init__(self, base_url: str, gallery: str, embedding: dict, threads: int = 4):
        self.base_url, self.gallery, self.embedding = base_url, gallery, embedding
        self.acknowledged: dict[str, list[str]] = {}
        self.unexpected: list[str] = []
        self.unavailable = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def _run(self, number: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            index = 0
            while not self.stop.is_set():
                subject = f"w{number}-{index}"
                index += 1
                try:
                    created = client.post(f"/galleries/{self.gallery}/subjects", json={"id": subject})
                    if not self._expected(created, 201):
                        continue
                    enrolled = client.post(f"/galleries/{self.gallery}/subjects/{subject}/faces",
                                           json={"embeddings": [self.embedding] * PER_ENROLMENT})
                    if self._expected(enrolled, 201):
                        self.acknowledged[subject] = [t["id"] for t in enrolled.json()["added"]]
                except httpx.TransportError:
                    time.sleep(0.05)  # the server is gone or restarting

    def _expected(self, response: httpx.Response, status: int) -> bool:
        if response.status_code == status:
            return True
        if response.status_code == 503 and response.json()["error"]["code"] == "storage_unavailable":
            assert response.headers["Retry-After"]
            self.unavailable += 1
            time.sleep(0.05)
        else:
            self.unexpected.append(f"{response.status_code} {response.text[:200]}")
        return False

    def __enter__(self) -> Enrollers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def assert_complete(base_url: str, gallery: str, acknowledged: dict[str, list[str]]) -> None:
    """Every acknowledged enrolment is there with its templates; every subject holds whole enrolments."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        subjects, cursor = [], None
        while True:
            page = client.get(f"/galleries/{gallery}/subjects", params={"limit": 1000, "cursor": cursor}).json()
            subjects += page["subjects"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        counts = {s["id"]: s["templates"] for s in subjects}
        assert all(count in (0, PER_ENROLMENT) for count in counts.values()), counts
        for subject, ids in acknowledged.items():
            stored = client.get(f"/galleries/{gallery}/subjects/{subject}").json()
            assert sorted(face["id"] for face in stored["faces"]) == sorted(ids), subject


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_mid_enrolment_loses_no_acknowledged_write(backend, request, lfw_dir, tmp_path) -> None:
    url = (f"sqlite:///{tmp_path}/facever.sqlite3" if backend == "sqlite"
           else request.getfixturevalue("postgres_url"))
    with server(url) as (base_url, process):
        wait_storage(base_url)
        embedding = embedding_of(base_url, lfw_dir)
        assert httpx.post(f"{base_url}/galleries", json={"id": "crash"}).status_code == 201
        with Enrollers(base_url, "crash", embedding) as load:
            while len(load.acknowledged) < 20:
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        assert not load.unexpected, load.unexpected[:3]
    with server(url) as (base_url, _):
        wait_storage(base_url)
        assert_complete(base_url, "crash", load.acknowledged)


def test_postgres_restarted_under_load(postgres_server, postgres_url, lfw_dir) -> None:
    with server(postgres_url) as (base_url, _):
        wait_storage(base_url)
        embedding = embedding_of(base_url, lfw_dir)
        assert httpx.post(f"{base_url}/galleries", json={"id": "restart"}).status_code == 201
        with Enrollers(base_url, "restart", embedding) as load:
            while len(load.acknowledged) < 10:
                time.sleep(0.05)
            postgres_server.stop("immediate")  # a crash: recovery replays the write-ahead log
            photo = {"images": ("p.jpg", (lfw_dir / "images" / PHOTO).read_bytes())}
            assert httpx.post(f"{base_url}/embed", files=photo, timeout=30).status_code == 200  # still serving
            deadline = time.monotonic() + 30
            while httpx.get(f"{base_url}/health/ready", timeout=5).json()["storage"] != "unavailable":
                assert time.monotonic() < deadline, "/health/ready never reported the outage"
                time.sleep(0.2)
            postgres_server.start()
            before = len(load.acknowledged)
            deadline = time.monotonic() + 60
            while len(load.acknowledged) < before + 10:  # it recovers on its own
                assert time.monotonic() < deadline, "no enrolment succeeded after the restart"
                time.sleep(0.05)
        assert not load.unexpected, load.unexpected[:3]
        assert load.unavailable > 0  # the outage was seen, as 503 storage_unavailable
        assert_complete(base_url, "restart", load.acknowledged)


def test_two_replicas_write_one_subject(postgres_url, lfw_dir) -> None:
    """Both replicas enrol into one subject while one of them deletes and re-creates it: whatever
    the interleaving, the subject holds whole enrolments only, and each replica sees the other's."""
    with server(postgres_url) as (first, _), server(postgres_url) as (second, _):
        wait_storage(first)
        wait_storage(second)
        embedding = embedding_of(first, lfw_dir)
        assert httpx.post(f"{first}/galleries", json={"id": "shared"}).status_code == 201
        assert httpx.post(f"{first}/galleries/shared/subjects", json={"id": "alice"}).status_code == 201
        results: list[int] = []

        def enrol(base_url: str) -> None:
            with httpx.Client(base_url=base_url, timeout=30) as client:
                for _ in range(15):
                    response = client.post("/galleries/shared/subjects/alice/faces",
                                           json={"embeddings": [embedding] * PER_ENROLMENT})
                    results.append(response.status_code)

        def churn() -> None:
            with httpx.Client(base_url=second, timeout=30) as client:
                for _ in range(5):
                    client.delete("/galleries/shared/subjects/alice")
                    client.post("/galleries/shared/subjects", json={"id": "alice"})

        threads = [threading.Thread(target=enrol, args=(url,)) for url in (first, second)]
        threads.append(threading.Thread(target=churn))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert set(results) <= {201, 404}, results  # 404: the subject was deleted at that moment
        seen = [httpx.get(f"{url}/galleries/shared/subjects/alice").json() for url in (first, second)]
        assert seen[0] == seen[1]  # no replica holds a cache of its own
        assert seen[0]["templates"] % PER_ENROLMENT == 0


def test_database_down_at_start_up(postgres_server, postgres_url, lfw_dir) -> None:
    """The service starts and serves /verify and /embed without its database; the subject routes
    answer 503 storage_unavailable with Retry-After; once the database is up it is used, unasked."""
    postgres_server.stop("fast")
    try:
        with server(postgres_url) as (base_url, _):
            photo = (lfw_dir / "images" / PHOTO).read_bytes()
            verified = httpx.post(f"{base_url}/verify", files={"image1": ("a.jpg", photo), "image2": ("b.jpg", photo)},
                                  timeout=30)
            assert verified.status_code == 200 and verified.json()["same"] is True
            refused = httpx.get(f"{base_url}/galleries", timeout=30)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "storage_unavailable"
            assert int(refused.headers["Retry-After"]) > 0
            assert httpx.get(f"{base_url}/health/ready").json()["storage"] in ("starting", "unavailable")
            postgres_server.start()
            wait_storage(base_url)
            assert httpx.post(f"{base_url}/galleries", json={"id": "late"}).status_code == 201
    finally:
        if not postgres_server.running():
            postgres_server.start()
