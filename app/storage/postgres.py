"""PostgreSQL, for several replicas sharing one gallery: psycopg 3 with a connection pool.

Nothing is cached in the service: every read goes to the database, so a replica sees another's
enrolments and deletes as soon as they are committed. An enrolment or delete locks its subject's row
(`SELECT ... FOR UPDATE`), so concurrent writes to one subject queue, across replicas. Connections
are checked as they leave the pool, so a restarted server costs the requests in flight a 503
storage_unavailable and nothing after it. Replicas migrating at once take turns on an advisory lock.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from app.storage.base import Conflict, StorageError, StorageUnavailable
from app.storage.sql import Database, SQLStorage

# How long a request waits for a connection before it is told storage_unavailable.
CONNECT_TIMEOUT_S = 5.0
MIGRATION_LOCK = 0x66616365  # "face": pg_advisory_xact_lock's key for schema changes


class _Connection:
    def __init__(self, connection: psycopg.Connection):
        self.connection = connection

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        cursor = self.connection.execute(sql.replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description is not None else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.connection.cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), rows)


class PostgresStorage(SQLStorage):
    url_scheme = "postgresql"
    blob_type = "BYTEA"
    serial_type = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"

    def __init__(self, url: str, max_connections: int = 4):
        self.url = url
        self.pool = ConnectionPool(
            url, min_size=1, max_size=max_connections, open=False, timeout=CONNECT_TIMEOUT_S,
            check=ConnectionPool.check_connection,
            kwargs={"autocommit": True, "connect_timeout": int(CONNECT_TIMEOUT_S)},
        )
        self.pool.open(wait=False)

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Database]:
        try:
            with self.pool.connection() as connection, connection.transaction():
                yield _Connection(connection)
        except StorageError:
            raise
        except psycopg.errors.IntegrityError as error:
            raise Conflict("conflict", f"the write conflicts with stored data: {error.diag.message_primary}") from None
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as error:
            raise StorageUnavailable(f"PostgreSQL is unreachable: {str(error).splitlines()[0]}") from None

    def _lock_schema(self, db: Database) -> None:
        db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))

    def _lock_subject(self, db: Database, gallery_id: str, subject_id: str) -> bool:
        return bool(db.execute("SELECT 1 FROM subjects WHERE gallery_id = ? AND id = ? FOR UPDATE",
                               (gallery_id, subject_id)))

    def close(self) -> None:
        self.pool.close()
