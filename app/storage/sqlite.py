"""The embedded default: one SQLite file (standard library), so the service needs no database server.

Write-ahead logging lets reads run beside a write; `synchronous=FULL` makes a commit durable before
it is acknowledged (a killed process or a lost machine keeps every answered enrolment); a write
transaction starts IMMEDIATE, so enrolments and deletes of one subject queue rather than interleave,
across threads and processes alike. Each thread keeps its own connection. `secure_delete` overwrites deleted rows, and the log is
checkpointed after each delete, so a deleted template's bytes do not linger in the file.
One file serves one machine: several replicas need PostgreSQL (app.storage.postgres).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.storage.base import Conflict, StorageError, StorageUnavailable
from app.storage.sql import Database, SQLStorage

BUSY_TIMEOUT_MS = 10_000


class _Connection:
    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.connection.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.connection.executemany(sql, rows)


class SQLiteStorage(SQLStorage):
    url_scheme = "sqlite"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()  # one connection per thread, opened on its first transaction
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._generation = 0  # close() moves it on: threads' connections from before are not used again

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                                     check_same_thread=False)  # used by its thread only; closed by close()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "secure_delete=ON",
                       f"busy_timeout={BUSY_TIMEOUT_MS}"):
            connection.execute(f"PRAGMA {pragma}")
        return connection

    def _thread_connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None or getattr(self._local, "generation", None) != self._generation:
            connection = self._local.connection = self._connect()
            self._local.generation = self._generation
            with self._lock:
                self._opened.append(connection)
        return connection

    def _drop_thread_connection(self) -> None:
        """After an error, the next transaction of this thread opens a fresh connection."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            with self._lock:
                if connection in self._opened:
                    self._opened.remove(connection)
            connection.close()

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Database]:
        try:
            connection = self._thread_connection()
        except (sqlite3.Error, OSError) as error:
            raise StorageUnavailable(f"cannot open the SQLite database: {error}") from None
        try:
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield _Connection(connection)
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except StorageError:
            raise
        except sqlite3.IntegrityError as error:
            raise Conflict("conflict", f"the write conflicts with stored data: {error}") from None
        except sqlite3.Error as error:
            self._drop_thread_connection()
            raise StorageUnavailable(f"the SQLite database failed: {error}") from None

    def _lock_subject(self, db: Database, gallery_id: str, subject_id: str) -> bool:
        # The IMMEDIATE transaction holds the database's write lock already.
        return bool(db.execute("SELECT 1 FROM subjects WHERE gallery_id = ? AND id = ?", (gallery_id, subject_id)))

    def _after_delete(self) -> None:
        try:
            self._thread_connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # readers hold the log; the next checkpoint truncates it

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
            self._generation += 1
        for connection in opened:
            connection.close()
