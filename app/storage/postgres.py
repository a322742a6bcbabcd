"""PostgreSQL, for several replicas sharing one gallery: psycopg 3 with a connection pool.

Every read of subjects goes to the database, so a replica sees another's enrolments and deletes as
soon as they are committed; the one cache, the search index's matrices (app.storage.search_index),
is checked against the gallery's revision at every search. An enrolment or delete locks its subject's row
(`SELECT ... FOR UPDATE`), so concurrent writes to one subject queue, across replicas. Connections
are checked as they leave the pool, so a restarted server costs the requests in flight a 503
storage_unavailable and nothing after it. Replicas migrating at once take turns on an advisory lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from app.logging import get_logger
from app.storage.base import Candidate, Conflict, StorageError, StorageUnavailable, gallery_not_found
from app.storage.sql import Database, SQLStorage
from model.types import EmbeddingModel

# How long a request waits for a connection before it is told storage_unavailable.
CONNECT_TIMEOUT_S = 5.0
logger = get_logger("storage")
MIGRATION_LOCK = 0x66616365  # "face": pg_advisory_xact_lock's key for schema changes
SWEEP_LOCK = 0x72657465  # "rete": one replica at a time sweeps expired subjects
# pgvector's HNSW search: the candidates it visits (recall), and how many nearest it hands the exact
# re-rank, per result asked for. The index's build: its memory (a graph that fits builds fast; 10^6
# centroids of 256 dimensions in half precision take about 1.2 GB), how long a replica waits for
# another's build before it takes over, and how long it waits after a failed build before it tries
# again (doubling with each failure in a row): a build that fails may have taken the server down
# with it (a pgvector built for another CPU dies of SIGILL), and searches stay exact meanwhile.
INDEX_BUILD_MEMORY = "2GB"
INDEX_RECHECK_S = 30.0
INDEX_RETRY_S = 600.0
INDEX_RETRY_MAX_S = 6 * 3600.0
EF_SEARCH = 200
CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 40
CENTROIDS = """CREATE TABLE IF NOT EXISTS subject_centroids (
    gallery_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    model_key TEXT NOT NULL,
    dim INTEGER NOT NULL,
    templates INTEGER NOT NULL,
    centroid vector NOT NULL,
    PRIMARY KEY (gallery_id, model_key, subject_id),
    FOREIGN KEY (gallery_id, subject_id) REFERENCES subjects (gallery_id, id) ON DELETE CASCADE)"""


def model_key(name: str, version: str, inference: str) -> str:
    return f"{name}\x1f{version}\x1f{inference}"


def index_name(dim: int) -> str:
    """The HNSW index of centroids of `dim` dimensions: in half precision, half the memory and build
    time of float32, and the exact re-rank reads the float32 centroids."""
    return f"subject_centroids_halfvec_{dim}"


def vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{value:.9g}" for value in np.asarray(vector, np.float64)) + "]"


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
    for_update = " FOR UPDATE"

    def __init__(self, url: str, max_connections: int = 4):
        self.url = url
        self.vectors = False  # pgvector installed here: set by migrate()
        self._sizes: dict[tuple[str, str], tuple[int, int]] = {}  # (gallery, model) -> (revision, subjects)
        self._ready_dims: set[int] = set()  # dimensions whose HNSW index is built and valid
        self._building: set[int] = set()
        self._failed_builds: dict[int, tuple[int, float]] = {}  # dim -> (failures in a row, retry after)
        self._build_lock = threading.Lock()
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

    def migrate(self) -> None:
        """The schema, and where the server has pgvector, each subject's centroid per model in a
        vector column with an HNSW index per dimension (built when a search first needs it):
        kept in step inside every template write's transaction, searched by nearest(). Not where
        templates are sealed: pgvector cannot index ciphertext, so the service's own index (which
        decrypts) searches, and centroids left from before are deleted."""
        super().migrate()
        with self._transaction(write=True) as db:
            self._lock_schema(db)
            if self.cipher is not None:  # centroids in the clear would undo the templates' sealing
                if db.execute("SELECT 1 FROM pg_tables WHERE tablename = 'subject_centroids'"):
                    db.execute("DELETE FROM subject_centroids")
                return
            if not db.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"):
                return
            db.execute("CREATE EXTENSION IF NOT EXISTS vector")
            new = not db.execute("SELECT 1 FROM pg_tables WHERE tablename = 'subject_centroids'")
            db.execute(CENTROIDS)
            if new:  # a database from before pgvector: its subjects' centroids, once
                for (gallery_id,) in db.execute("SELECT id FROM galleries"):
                    subjects = [row[0] for row in db.execute("SELECT id FROM subjects WHERE gallery_id = ?",
                                                             (gallery_id,))]
                    self._centroids(db, gallery_id, subjects)
        self.vectors = True

    def _templates_changed(self, db: Database, gallery_id: str, subject_ids) -> None:
        if self.vectors:
            self._centroids(db, gallery_id, list(subject_ids))

    def _centroids(self, db: Database, gallery_id: str, subject_ids: list[str]) -> None:
        """The subjects' centroids (one per model they have templates of) computed afresh."""
        if not subject_ids:
            return
        db.execute("DELETE FROM subject_centroids WHERE gallery_id = ? AND subject_id = ANY(?)", (gallery_id, subject_ids))
        rows = db.execute("SELECT subject_id, model_name, model_version, inference, dim, embedding FROM templates "
                          "WHERE gallery_id = ? AND subject_id = ANY(?)", (gallery_id, subject_ids))
        groups: dict[tuple, list[np.ndarray]] = {}
        for subject_id, name, version, inference, dim, blob in rows:
            groups.setdefault((subject_id, model_key(name, version, inference), dim), []).append(
                np.frombuffer(bytes(blob), "<f4", count=dim))
        values = []
        for (subject_id, key, dim), vectors in groups.items():
            centre = np.mean(vectors, axis=0)
            values.append((gallery_id, subject_id, key, dim, len(vectors), vector_text(centre / np.linalg.norm(centre))))
        db.executemany("INSERT INTO subject_centroids (gallery_id, subject_id, model_key, dim, templates, centroid) "
                       "VALUES (?, ?, ?, ?, ?, ?::vector)", values)

    def import_subjects(self, gallery_id, subjects, audit=None, consent_refs=None) -> int:
        """As every back-end's, then fresh planner statistics where centroids were added in bulk:
        with stale ones PostgreSQL sorts the whole gallery rather than walk the HNSW index."""
        stored = super().import_subjects(gallery_id, subjects, audit, consent_refs)
        if self.vectors:
            with self._transaction(write=True) as db:
                db.execute("ANALYZE subject_centroids")
        return stored

    def _index_ready(self, dim: int) -> bool:
        """Whether the HNSW index of this dimension is built; if it is not, its build is started in
        the background (CONCURRENTLY: writes go on meanwhile; replicas starting it too find it
        there). Built after the centroids are in, it is built in bulk, far faster than row by row."""
        if dim in self._ready_dims:
            return True
        name = index_name(dim)
        with self._transaction(write=False) as db:
            state = db.execute("SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
                               "WHERE c.relname = ?", (name,))
        if state and state[0][0]:
            self._ready_dims.add(dim)
            return True
        with self._build_lock:
            if dim in self._building or time.monotonic() < self._failed_builds.get(dim, (0, 0.0))[1]:
                return False
            self._building.add(dim)
        threading.Thread(target=self._build_index, args=(dim, bool(state)), daemon=True,
                         name=f"hnsw-{dim}").start()
        return False

    def _build_index(self, dim: int, exists: bool) -> None:
        name = index_name(dim)
        try:
            with self.pool.connection() as connection:  # autocommit: CONCURRENTLY needs no transaction
                if exists:  # another process is building it, or a build died and left it invalid
                    time.sleep(INDEX_RECHECK_S)
                    valid = connection.execute("SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON "
                                               "i.indexrelid = c.oid WHERE c.relname = %s", (name,)).fetchone()
                    if valid and valid[0]:
                        self._build_ended(dim, failed=False)
                        return
                    connection.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                # The float32 index of schema 2's first release, replaced by the half-precision one.
                connection.execute(f"DROP INDEX CONCURRENTLY IF EXISTS subject_centroids_hnsw_{dim}")
                # pgvector says so where the graph outgrows the build's memory (and the build slows).
                def warn(notice: psycopg.errors.Diagnostic) -> None:
                    logger.warning("building %s: %s", name, notice.message_primary)

                connection.add_notice_handler(warn)
                try:
                    connection.execute(f"SET maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
                    connection.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON subject_centroids "
                                       f"USING hnsw ((centroid::halfvec({dim})) halfvec_ip_ops) WHERE dim = {dim}")
                    connection.execute("ANALYZE subject_centroids")
                    self._build_ended(dim, failed=False)
                finally:  # the connection goes back to the pool as it came
                    connection.remove_notice_handler(warn)
                    connection.execute("RESET maintenance_work_mem")
        except (psycopg.Error, PoolTimeout):
            wait = self._build_ended(dim, failed=True)
            logger.exception("building the search index %s failed; searches stay exact, the build is tried "
                             "again in %.0f s", name, wait)
        finally:
            with self._build_lock:
                self._building.discard(dim)

    def _build_ended(self, dim: int, failed: bool) -> float:
        """Counts a failed build of this dimension's index (or clears the count); the seconds until the
        next try."""
        with self._build_lock:
            if not failed:
                self._failed_builds.pop(dim, None)
                return 0.0
            failures = self._failed_builds.get(dim, (0, 0.0))[0] + 1
            wait = min(INDEX_RETRY_S * 2 ** (failures - 1), INDEX_RETRY_MAX_S)
            self._failed_builds[dim] = (failures, time.monotonic() + wait)
            return wait

    def nearest(self, gallery_id: str, model: EmbeddingModel, probe: np.ndarray,
                top: int) -> tuple[int, list[Candidate]] | None:
        """pgvector's HNSW index (inner product, half precision) proposes max(4 x top, 40) centroids; they are
        re-ranked by their exact distance, so the answer matches an exact search wherever the
        true nearest are among the proposed (recall, bench/search_speed.py). None (the service searches
        exactly itself) until the index of this dimension is built."""
        if not self.vectors:
            return None
        dim = int(np.asarray(probe).size)
        if not self._index_ready(dim):
            return None
        key = model_key(model.name, model.version, model.inference)
        with self._transaction(write=False) as db:
            revision = db.execute("SELECT revision FROM galleries WHERE id = ?", (gallery_id,))
            if not revision:
                raise gallery_not_found(gallery_id)
            known = self._sizes.get((gallery_id, key))
            if known is None or known[0] != revision[0][0]:  # counted again only after a write
                count = db.execute("SELECT count(*) FROM subject_centroids WHERE gallery_id = ? AND model_key = ?",
                                   (gallery_id, key))[0][0]
                known = self._sizes[(gallery_id, key)] = (revision[0][0], int(count))
            size = known[1]
            # The HNSW index, filtered by gallery and model as it walks (pgvector's iterative scan).
            db.execute(f"SET LOCAL hnsw.ef_search = {EF_SEARCH}")
            db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = db.execute(
                f"SELECT subject_id, templates, centroid::text FROM subject_centroids "
                f"WHERE gallery_id = ? AND model_key = ? AND dim = {dim} "
                f"ORDER BY centroid::halfvec({dim}) <#> ?::halfvec({dim}) LIMIT ?",
                (gallery_id, key, vector_text(probe), max(CANDIDATES_PER_RESULT * top, MIN_CANDIDATES)))
        if not rows:
            return int(size), []
        centroids = np.array([np.array(text[1:-1].split(","), dtype=np.float64) for _, _, text in rows])
        scores = np.sqrt(np.clip(2.0 - 2.0 * centroids @ np.asarray(probe, np.float64), 0.0, 4.0))
        order = np.argsort(scores, kind="stable")[:top]
        return int(size), [Candidate(rows[i][0], float(scores[i]), int(rows[i][1])) for i in order]

    def _lock_schema(self, db: Database) -> None:
        db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))

    def _lock_sweep(self, db: Database) -> bool:
        return bool(db.execute("SELECT pg_try_advisory_xact_lock(?)", (SWEEP_LOCK,))[0][0])

    def _lock_subject(self, db: Database, gallery_id: str, subject_id: str) -> bool:
        return bool(db.execute("SELECT 1 FROM subjects WHERE gallery_id = ? AND id = ? FOR UPDATE",
                               (gallery_id, subject_id)))

    def close(self) -> None:
        self.pool.close()
