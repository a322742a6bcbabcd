"""The contract in SQL, once for both back-ends: each supplies its connections, its transactions,
how it locks a subject for an enrolment, and how its driver's errors map onto the contract's.

Queries are written with `?` placeholders (SQLite's); PostgreSQL's back-end turns them into `%s`.
Timestamps are Unix seconds (double precision), embeddings little-endian float32 bytes.
"""

from __future__ import annotations

import json
import secrets
import uuid
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

from app.logging import get_logger
from app.storage.audit import GENESIS, AuditEntry, AuditEvent, entry_hash
from app.storage.base import (
    DAY_S,
    SCHEMA_VERSION,
    AuditQuery,
    ConsentRequired,
    Conflict,
    CorruptTemplate,
    Deleted,
    DuplicateCheck,
    EnrolmentCheck,
    Expired,
    Gallery,
    GalleryTemplates,
    Job,
    JobState,
    KeyRecord,
    MissingTemplateKey,
    NewTemplate,
    NotFound,
    Page,
    PossibleDuplicate,
    Retention,
    SchemaTooNew,
    Storage,
    Subject,
    SubjectPair,
    Template,
    gallery_not_found,
    mixed_dimensions,
    now,
)
from app.storage.crypto import BrokenSeal, TemplateCipher, template_binding
from model.types import EmbeddingModel

# Each version's statements; `{blob}` is the dialect's byte-string type, `{serial}` its
# auto-numbered primary key (templates keep their enrolment order). Append, never edit.
MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE galleries (id TEXT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL)",
        """CREATE TABLE subjects (
            gallery_id TEXT NOT NULL REFERENCES galleries (id) ON DELETE CASCADE,
            id TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (gallery_id, id))""",
        """CREATE TABLE templates (
            seq {serial},
            id TEXT NOT NULL UNIQUE,
            gallery_id TEXT NOT NULL,
            subject_id TEXT NOT NULL,
            model_name TEXT NOT NULL,
            model_version TEXT NOT NULL,
            inference TEXT NOT NULL,
            precision TEXT NOT NULL,
            dim INTEGER NOT NULL,
            embedding {blob} NOT NULL,
            face TEXT,
            quality TEXT,
            upload_hash TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            FOREIGN KEY (gallery_id, subject_id) REFERENCES subjects (gallery_id, id) ON DELETE CASCADE,
            UNIQUE (gallery_id, upload_hash))""",
        "CREATE INDEX templates_by_subject ON templates (gallery_id, subject_id, seq)",
    ],
    [  # 2: a revision per gallery, which every template write moves on, for the search index
        "ALTER TABLE galleries ADD COLUMN revision BIGINT NOT NULL DEFAULT 0",
    ],
    [  # 3: the subjects each revision changed, so a search index patches them (app.storage.search_index)
        """CREATE TABLE template_changes (
            gallery_id TEXT NOT NULL REFERENCES galleries (id) ON DELETE CASCADE,
            revision BIGINT NOT NULL,
            subject_id TEXT NOT NULL,
            PRIMARY KEY (gallery_id, revision, subject_id))""",
    ],
    [  # 4: API keys (only their secrets' hashes), and the audit trail with its chain's head and anchor
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            secret_hash TEXT NOT NULL,
            scopes TEXT NOT NULL,
            galleries TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION,
            last_used_at DOUBLE PRECISION,
            revoked_at DOUBLE PRECISION,
            rate_per_s DOUBLE PRECISION,
            burst INTEGER)""",
        """CREATE TABLE audit (
            seq {serial},
            at DOUBLE PRECISION NOT NULL,
            key_id TEXT NOT NULL,
            action TEXT NOT NULL,
            gallery_id TEXT,
            subject_id TEXT,
            status INTEGER NOT NULL,
            matched INTEGER,
            request_id TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL)""",
        "CREATE INDEX audit_by_gallery ON audit (gallery_id, seq)",
        "CREATE INDEX audit_by_key ON audit (key_id, seq)",
        "CREATE TABLE audit_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL, anchor TEXT NOT NULL)",
        f"INSERT INTO audit_head (id, seq, hash, anchor) VALUES (1, 0, '{GENESIS}', '{GENESIS}')",
    ],
    [  # 5: the key each template is sealed with (NULL: stored in the clear; app.storage.crypto)
        "ALTER TABLE templates ADD COLUMN key_id TEXT",
    ],
    [  # 6: retention per gallery; each subject's enrolment, last activity and consent reference
        "ALTER TABLE galleries ADD COLUMN max_inactive_days DOUBLE PRECISION",
        "ALTER TABLE galleries ADD COLUMN max_age_days DOUBLE PRECISION",
        "ALTER TABLE galleries ADD COLUMN require_consent INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE subjects ADD COLUMN enrolled_at DOUBLE PRECISION",
        "ALTER TABLE subjects ADD COLUMN last_active_at DOUBLE PRECISION",
        "ALTER TABLE subjects ADD COLUMN consent_ref TEXT",
        "UPDATE subjects SET last_active_at = updated_at, enrolled_at = (SELECT MIN(t.created_at) FROM templates t "
        "WHERE t.gallery_id = subjects.gallery_id AND t.subject_id = subjects.id)",
        "ALTER TABLE audit ADD COLUMN consent_ref TEXT",
    ],
    [  # 7: duplicate identities: each gallery's enrolment check, a subject's flag, and report jobs
        "ALTER TABLE galleries ADD COLUMN duplicate_check TEXT NOT NULL DEFAULT 'off'",
        "ALTER TABLE subjects ADD COLUMN possible_duplicates TEXT",
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            gallery_id TEXT NOT NULL REFERENCES galleries (id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            key_id TEXT NOT NULL,
            parameters TEXT NOT NULL,
            state TEXT NOT NULL,
            done BIGINT NOT NULL DEFAULT 0,
            total BIGINT NOT NULL DEFAULT 0,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION,
            summary TEXT)""",
        """CREATE TABLE job_pairs (
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            first_subject TEXT NOT NULL,
            second_subject TEXT NOT NULL,
            score DOUBLE PRECISION NOT NULL,
            threshold DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (job_id, seq))""",
    ],
]
# How many of a gallery's latest revisions the change log keeps; an index further behind reads the
# gallery again. And how many changed subjects a patch fetches before reading the whole is as quick.
CHANGES_KEPT = 256
MAX_PATCHED_SUBJECTS = 5_000
IN_CHUNK = 500  # ids per `IN (...)` list
assert len(MIGRATIONS) == SCHEMA_VERSION

_TEMPLATE_COLUMNS = ("id, subject_id, model_name, model_version, inference, precision, dim, embedding, face, "
                     "quality, upload_hash, created_at, key_id")
logger = get_logger("storage")


class Database(Protocol):
    """A transaction's statements: rows as tuples."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


def _template(row: tuple, embedding: np.ndarray) -> Template:
    (template_id, subject_id, name, version, inference, precision, dim, _, face, quality, upload_hash,
     created_at, _) = row
    face = json.loads(face) if face else {}
    return Template(
        id=template_id, subject_id=subject_id, created_at=created_at, embedding=embedding,
        model=EmbeddingModel(name, version, inference, precision),
        box=tuple(face["box"]) if face.get("box") else None,
        landmarks=tuple(tuple(point) for point in face["landmarks"]) if face.get("landmarks") else None,
        detection_score=face.get("score"),
        quality=json.loads(quality) if quality else None,
        upload_hash=upload_hash,
    )


def _face_json(template: NewTemplate) -> str | None:
    face = {"box": template.box, "landmarks": template.landmarks, "score": template.detection_score}
    return json.dumps({key: value for key, value in face.items() if value is not None}) or None


class SQLStorage(Storage):
    """Everything but connections, transactions and error mapping (see the subclasses)."""

    blob_type = "BLOB"
    serial_type = "INTEGER PRIMARY KEY AUTOINCREMENT"
    # Seals templates at rest where keys are given (open_storage); None: stored in the clear.
    cipher: TemplateCipher | None = None
    # Locks a row read for the rest of the transaction (PostgreSQL); SQLite's write transaction
    # holds the whole database already.
    for_update = ""

    @abstractmethod
    def _transaction(self, write: bool) -> AbstractContextManager[Database]:
        """A transaction, committed on a clean exit; the driver's errors come out as StorageErrors."""

    @abstractmethod
    def _lock_subject(self, db: Database, gallery_id: str, subject_id: str) -> bool:
        """Lock the subject's row against concurrent writes until the transaction ends; False if absent."""

    def _lock_schema(self, db: Database) -> None:
        """Keep two processes from migrating at once (SQLite's write transaction already does)."""

    # -- schema ---------------------------------------------------------------------------

    def migrate(self) -> None:
        with self._transaction(write=True) as db:
            self._lock_schema(db)
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = db.execute("SELECT version FROM schema_version")
            version = rows[0][0] if rows else 0
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(f"the database's schema is version {version}, newer than this service's "
                                   f"{SCHEMA_VERSION}: it was made by a newer release; run that release (or newer)")
            if version >= 5:  # templates may be sealed: refuse before any change, schema migrations included
                self._check_template_keys(db)
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    db.execute(statement.format(blob=self.blob_type, serial=self.serial_type))
            if not rows:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                db.execute("INSERT INTO meta (key, value) VALUES ('upload_salt', ?)", (secrets.token_hex(32),))
            elif version < SCHEMA_VERSION:
                db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def _check_template_keys(self, db: Database) -> None:
        """MissingTemplateKey where templates are sealed with a key this service was not given."""
        sealed_with = {row[0] for row in db.execute("SELECT DISTINCT key_id FROM templates WHERE key_id IS NOT NULL")}
        missing = sorted(sealed_with - set(self.cipher.key_ids if self.cipher else ()))
        if missing:
            raise MissingTemplateKey(f"templates are sealed with key {missing[0]!r}, which this service was not given "
                                     "(FACEVER_TEMPLATE_KEYS or FACEVER_TEMPLATE_KEYS_FILE); no data is touched")

    def ping(self) -> None:
        with self._transaction(write=False) as db:
            db.execute("SELECT version FROM schema_version")

    def upload_salt(self) -> bytes:
        with self._transaction(write=False) as db:
            return bytes.fromhex(db.execute("SELECT value FROM meta WHERE key = 'upload_salt'")[0][0])

    # -- galleries ------------------------------------------------------------------------

    _GALLERY = ("SELECT g.id, g.created_at, (SELECT COUNT(*) FROM subjects s WHERE s.gallery_id = g.id), "
                "(SELECT COUNT(*) FROM templates t WHERE t.gallery_id = g.id), g.max_inactive_days, g.max_age_days, "
                "g.require_consent, g.duplicate_check FROM galleries g")

    def create_gallery(self, gallery_id: str, audit: AuditEvent | None = None, retention: Retention = Retention(),
                       require_consent: bool = False, duplicate_check: DuplicateCheck = "off") -> Gallery:
        with self._transaction(write=True) as db:
            if db.execute("SELECT 1 FROM galleries WHERE id = ?", (gallery_id,)):
                raise Conflict("gallery_exists", f"gallery {gallery_id!r} already exists")
            created = now()
            db.execute("INSERT INTO galleries (id, created_at, max_inactive_days, max_age_days, require_consent, "
                       "duplicate_check) VALUES (?, ?, ?, ?, ?, ?)",
                       (gallery_id, created, retention.max_inactive_days, retention.max_age_days,
                        int(require_consent), duplicate_check))
            self._audit(db, audit)
        return Gallery(gallery_id, created, 0, 0, retention, require_consent, duplicate_check)

    def set_gallery_policy(self, gallery_id: str, retention: Retention, require_consent: bool,
                           audit: AuditEvent | None = None, duplicate_check: DuplicateCheck = "off") -> Gallery:
        with self._transaction(write=True) as db:
            if not db.execute("UPDATE galleries SET max_inactive_days = ?, max_age_days = ?, require_consent = ?, "
                              "duplicate_check = ? WHERE id = ? RETURNING id",
                              (retention.max_inactive_days, retention.max_age_days, int(require_consent),
                               duplicate_check, gallery_id)):
                raise gallery_not_found(gallery_id)
            self._audit(db, audit)
            return _gallery(db.execute(self._GALLERY + " WHERE g.id = ?", (gallery_id,))[0])

    def get_gallery(self, gallery_id: str) -> Gallery:
        with self._transaction(write=False) as db:
            rows = db.execute(self._GALLERY + " WHERE g.id = ?", (gallery_id,))
        if not rows:
            raise gallery_not_found(gallery_id)
        return _gallery(rows[0])

    def list_galleries(self, after: str | None, limit: int, reach: Sequence[str] | None = None) -> Page:
        where, params = _reach_filter(reach)
        with self._transaction(write=False) as db:
            rows = db.execute(self._GALLERY + f" WHERE g.id > ?{where} ORDER BY g.id LIMIT ?",
                              (after or "", *params, limit + 1))
        return _page([_gallery(row) for row in rows], limit)

    def delete_gallery(self, gallery_id: str, audit: AuditEvent | None = None) -> Deleted:
        with self._transaction(write=True) as db:
            counts = db.execute("SELECT (SELECT COUNT(*) FROM subjects WHERE gallery_id = ?), "
                                "(SELECT COUNT(*) FROM templates WHERE gallery_id = ?)", (gallery_id, gallery_id))[0]
            if not db.execute("DELETE FROM galleries WHERE id = ? RETURNING id", (gallery_id,)):
                raise gallery_not_found(gallery_id)
            self._audit(db, audit)
        self._after_delete()
        return Deleted(galleries=1, subjects=counts[0], templates=counts[1])

    # -- subjects -------------------------------------------------------------------------

    _SUBJECT = ("SELECT s.gallery_id, s.id, s.created_at, s.updated_at, (SELECT COUNT(*) FROM templates t "
                "WHERE t.gallery_id = s.gallery_id AND t.subject_id = s.id), s.enrolled_at, s.last_active_at, "
                "s.consent_ref, g.max_inactive_days, g.max_age_days, s.possible_duplicates FROM subjects s JOIN galleries g "
                "ON g.id = s.gallery_id")

    def create_subject(self, gallery_id: str, subject_id: str, audit: AuditEvent | None = None) -> Subject:
        with self._transaction(write=True) as db:
            if not db.execute("SELECT 1 FROM galleries WHERE id = ?", (gallery_id,)):
                raise gallery_not_found(gallery_id)
            if db.execute("SELECT 1 FROM subjects WHERE gallery_id = ? AND id = ?", (gallery_id, subject_id)):
                raise Conflict("subject_exists", f"subject {subject_id!r} already exists in gallery {gallery_id!r}")
            created = now()
            db.execute("INSERT INTO subjects (gallery_id, id, created_at, updated_at) VALUES (?, ?, ?, ?)",
                       (gallery_id, subject_id, created, created))
            self._audit(db, audit)
            return _subject(self._subject_rows(db, gallery_id, subject_id)[0])

    def get_subject(self, gallery_id: str, subject_id: str) -> Subject:
        with self._transaction(write=False) as db:
            rows = self._subject_rows(db, gallery_id, subject_id)
            templates = db.execute(f"SELECT {_TEMPLATE_COLUMNS} FROM templates WHERE gallery_id = ? AND subject_id = ? "
                                   "ORDER BY seq", (gallery_id, subject_id))
        return _subject(rows[0], tuple(self._read_template(gallery_id, row) for row in templates))

    def _subject_rows(self, db: Database, gallery_id: str, subject_id: str) -> list[tuple]:
        rows = db.execute(self._SUBJECT + " WHERE s.gallery_id = ? AND s.id = ?", (gallery_id, subject_id))
        if rows:
            return rows
        if not db.execute("SELECT 1 FROM galleries WHERE id = ?", (gallery_id,)):
            raise gallery_not_found(gallery_id)
        raise NotFound("subject", f"no subject {subject_id!r} in gallery {gallery_id!r}")

    def list_subjects(self, gallery_id: str, after: str | None, limit: int) -> Page:
        with self._transaction(write=False) as db:
            if not db.execute("SELECT 1 FROM galleries WHERE id = ?", (gallery_id,)):
                raise gallery_not_found(gallery_id)
            rows = db.execute(self._SUBJECT + " WHERE s.gallery_id = ? AND s.id > ? ORDER BY s.id LIMIT ?",
                              (gallery_id, after or "", limit + 1))
        return _page([_subject(row) for row in rows], limit)

    def delete_subject(self, gallery_id: str, subject_id: str, audit: AuditEvent | None = None) -> Deleted:
        with self._transaction(write=True) as db:
            if not self._lock_subject(db, gallery_id, subject_id):
                self._subject_rows(db, gallery_id, subject_id)  # raises the right NotFound
            removed = db.execute("DELETE FROM templates WHERE gallery_id = ? AND subject_id = ? RETURNING id",
                                 (gallery_id, subject_id))
            db.execute("DELETE FROM subjects WHERE gallery_id = ? AND id = ?", (gallery_id, subject_id))
            self._forget_in_reports(db, gallery_id, subject_id)
            self._next_revision(db, gallery_id, [subject_id])
            self._audit(db, audit)
        self._after_delete()
        return Deleted(subjects=1, templates=len(removed))

    # -- templates ------------------------------------------------------------------------

    def add_templates(
        self, gallery_id: str, subject_id: str, templates: Sequence[NewTemplate], check: EnrolmentCheck,
        max_templates: int, audit: AuditEvent | None = None, consent_ref: str | None = None,
        possible_duplicates: Sequence[PossibleDuplicate] = (),
    ) -> list[Template]:
        with self._transaction(write=True) as db:
            if not self._lock_subject(db, gallery_id, subject_id):
                self._subject_rows(db, gallery_id, subject_id)
            required, given_before = db.execute(
                "SELECT g.require_consent, s.consent_ref FROM subjects s JOIN galleries g ON g.id = s.gallery_id "
                "WHERE s.gallery_id = ? AND s.id = ?", (gallery_id, subject_id))[0]
            if required and not (consent_ref or given_before):
                raise ConsentRequired(f"gallery {gallery_id!r} enrols only with a consent_ref")
            stored = [self._read_template(gallery_id, row) for row in db.execute(
                f"SELECT {_TEMPLATE_COLUMNS} FROM templates WHERE gallery_id = ? AND subject_id = ? "
                "ORDER BY seq", (gallery_id, subject_id))]
            if len(stored) + len(templates) > max_templates:
                raise Conflict("subject_full", f"subject {subject_id!r} has {len(stored)} templates; at most "
                                               f"{max_templates} per subject")
            for template in templates:
                if template.upload_hash and db.execute(
                    "SELECT subject_id FROM templates WHERE gallery_id = ? AND upload_hash = ?",
                    (gallery_id, template.upload_hash),
                ):
                    raise Conflict("duplicate_face", "this very file is already enrolled in the gallery")
            check(stored)
            created = now()
            added = [Template(**vars(t), id=uuid.uuid4().hex, subject_id=subject_id, created_at=created)
                     for t in templates]
            self._insert_templates(db, gallery_id, added)
            self._templates_changed(db, gallery_id, [subject_id])
            db.execute("UPDATE subjects SET updated_at = ?, last_active_at = ?, enrolled_at = COALESCE(enrolled_at, ?), "
                       "consent_ref = COALESCE(?, consent_ref) WHERE gallery_id = ? AND id = ?",
                       (created, created, created, consent_ref, gallery_id, subject_id))
            if possible_duplicates:
                db.execute("UPDATE subjects SET possible_duplicates = ? WHERE gallery_id = ? AND id = ?",
                           (json.dumps([vars(match) for match in possible_duplicates]), gallery_id, subject_id))
            self._next_revision(db, gallery_id, [subject_id])
            self._audit(db, audit)
        return added

    def clear_duplicates(self, gallery_id: str, subject_id: str, audit: AuditEvent | None = None) -> Subject:
        with self._transaction(write=True) as db:
            if not db.execute("UPDATE subjects SET possible_duplicates = NULL WHERE gallery_id = ? AND id = ? "
                              "RETURNING id", (gallery_id, subject_id)):
                self._subject_rows(db, gallery_id, subject_id)  # raises the right NotFound
            self._audit(db, audit)
            return _subject(self._subject_rows(db, gallery_id, subject_id)[0])

    def delete_template(self, gallery_id: str, subject_id: str, template_id: str,
                        audit: AuditEvent | None = None) -> Deleted:
        with self._transaction(write=True) as db:
            if not self._lock_subject(db, gallery_id, subject_id):
                self._subject_rows(db, gallery_id, subject_id)
            if not db.execute("DELETE FROM templates WHERE gallery_id = ? AND subject_id = ? AND id = ? RETURNING id",
                              (gallery_id, subject_id, template_id)):
                raise NotFound("template", f"no template {template_id!r} of subject {subject_id!r}")
            self._templates_changed(db, gallery_id, [subject_id])
            db.execute("UPDATE subjects SET updated_at = ? WHERE gallery_id = ? AND id = ?",
                       (now(), gallery_id, subject_id))
            self._next_revision(db, gallery_id, [subject_id])
            self._audit(db, audit)
        self._after_delete()
        return Deleted(templates=1)

    def import_subjects(self, gallery_id: str, subjects: Sequence[tuple[str, Sequence[NewTemplate]]],
                        audit: AuditEvent | None = None, consent_refs: Mapping[str, str] | None = None) -> int:
        created = now()
        consent_refs = consent_refs or {}
        rows = [Template(**vars(t), id=uuid.uuid4().hex, subject_id=subject_id, created_at=created)
                for subject_id, templates in subjects for t in templates]
        with self._transaction(write=True) as db:
            gallery = db.execute("SELECT require_consent FROM galleries WHERE id = ?", (gallery_id,))
            if not gallery:
                raise gallery_not_found(gallery_id)
            lacking = [subject_id for subject_id, _ in subjects if not consent_refs.get(subject_id)]
            if gallery[0][0] and lacking:
                raise ConsentRequired(f"gallery {gallery_id!r} enrols only with a consent_ref; subject "
                                      f"{lacking[0]!r} has none")
            db.executemany("INSERT INTO subjects (gallery_id, id, created_at, updated_at, enrolled_at, last_active_at, "
                           "consent_ref) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(gallery_id, subject_id, created, created, created if templates else None, created,
                             consent_refs.get(subject_id)) for subject_id, templates in subjects])
            self._insert_templates(db, gallery_id, rows)
            self._templates_changed(db, gallery_id, [subject_id for subject_id, _ in subjects])
            self._next_revision(db, gallery_id, [subject_id for subject_id, _ in subjects])
            self._audit(db, audit)
        return len(rows)

    def _templates_changed(self, db: Database, gallery_id: str, subject_ids: Sequence[str]) -> None:
        """In the write's transaction, after these subjects' templates changed: where the back-end
        keeps an index of its own (pgvector's centroids), bring it up to date."""

    def _next_revision(self, db: Database, gallery_id: str, subject_ids: Sequence[str]) -> None:
        """Move the gallery's revision on, and log the subjects whose templates this write changed:
        an index holding an earlier revision then fetches only theirs (gallery_changes). The log
        keeps the last CHANGES_KEPT revisions."""
        revision = db.execute("UPDATE galleries SET revision = revision + 1 WHERE id = ? RETURNING revision",
                              (gallery_id,))[0][0]
        db.executemany("INSERT INTO template_changes (gallery_id, revision, subject_id) VALUES (?, ?, ?)",
                       [(gallery_id, revision, subject_id) for subject_id in dict.fromkeys(subject_ids)])
        db.execute("DELETE FROM template_changes WHERE gallery_id = ? AND revision <= ?",
                   (gallery_id, revision - CHANGES_KEPT))

    def gallery_revision(self, gallery_id: str) -> int:
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT revision FROM galleries WHERE id = ?", (gallery_id,))
        if not rows:
            raise gallery_not_found(gallery_id)
        return int(rows[0][0])

    _MODEL_TEMPLATES = ("SELECT subject_id, dim, embedding, id, precision, key_id FROM templates WHERE gallery_id = ? "
                        "AND model_name = ? AND model_version = ? AND inference = ?")

    def gallery_templates(self, gallery_id: str, model: EmbeddingModel) -> GalleryTemplates:
        with self._transaction(write=False) as db:
            created_at, revision = self._gallery_version(db, gallery_id)
            rows = db.execute(self._MODEL_TEMPLATES + " ORDER BY subject_id, seq",
                              (gallery_id, model.name, model.version, model.inference))
        return self._grouped(gallery_id, model, created_at, revision, rows)

    def gallery_changes(self, gallery_id: str, model: EmbeddingModel, created_at: float,
                        since: int) -> GalleryTemplates | None:
        with self._transaction(write=False) as db:
            created, revision = self._gallery_version(db, gallery_id)
            if created != created_at or not since <= revision <= since + CHANGES_KEPT:
                return None
            logged = db.execute("SELECT revision, subject_id FROM template_changes WHERE gallery_id = ? "
                                "AND revision > ?", (gallery_id, since))
            # Every revision logs its subjects: one missing was pruned, or made by a release before the log.
            changed = sorted({subject_id for _, subject_id in logged})
            if len({number for number, _ in logged}) != revision - since or len(changed) > MAX_PATCHED_SUBJECTS:
                return None
            rows = []
            for start in range(0, len(changed), IN_CHUNK):
                chunk = changed[start : start + IN_CHUNK]
                rows += db.execute(self._MODEL_TEMPLATES + f" AND subject_id IN ({', '.join('?' * len(chunk))}) "
                                   "ORDER BY subject_id, seq", (gallery_id, model.name, model.version,
                                                                model.inference, *chunk))
        return self._grouped(gallery_id, model, created, revision, rows, changed)

    def _gallery_version(self, db: Database, gallery_id: str) -> tuple[float, int]:
        rows = db.execute("SELECT created_at, revision FROM galleries WHERE id = ?", (gallery_id,))
        if not rows:
            raise gallery_not_found(gallery_id)
        return float(rows[0][0]), int(rows[0][1])

    # -- templates at rest --------------------------------------------------------------------

    def _seal(self, gallery_id: str, template: Template, key_id: str | None = None) -> tuple[str | None, bytes]:
        """The key id and the bytes a template's embedding is stored as: sealed where keys are given
        (with `key_id`, else the first key)."""
        data = np.ascontiguousarray(template.embedding, dtype="<f4").tobytes()
        if self.cipher is None:
            return None, data
        model = template.model
        binding = template_binding(gallery_id, template.subject_id, template.id,
                                   (model.name, model.version, model.inference, model.precision), len(template.embedding))
        return self.cipher.seal(data, binding, key_id)

    def _unseal(self, gallery_id: str, subject_id: str, template_id: str, model: tuple[str, ...], dim: int,
                key_id: str | None, blob: bytes) -> np.ndarray:
        """A stored embedding; CorruptTemplate where its blob does not open for its row."""
        data = self._unsealed_bytes(gallery_id, subject_id, template_id, model, dim, key_id, blob)
        return np.frombuffer(data, dtype="<f4").astype(np.float32)

    def _unsealed_bytes(self, gallery_id: str, subject_id: str, template_id: str, model: tuple[str, ...], dim: int,
                        key_id: str | None, blob: bytes) -> bytes:
        data = bytes(blob)
        if key_id is not None and (self.cipher is None or key_id not in self.cipher.key_ids):
            raise CorruptTemplate(f"subject {subject_id!r} of gallery {gallery_id!r} holds a template sealed with key "
                                  f"{key_id!r}, which this service was not given ({template_id}); give the service "
                                  "every key the templates name")
        if key_id is not None:
            try:
                data = self.cipher.open(key_id, data, template_binding(gallery_id, subject_id, template_id, model, dim))
            except BrokenSeal:
                raise CorruptTemplate(f"subject {subject_id!r} of gallery {gallery_id!r} holds a template that does not "
                                      f"decrypt ({template_id}): it was moved, edited or damaged") from None
        if len(data) != 4 * dim:
            raise CorruptTemplate(f"subject {subject_id!r} of gallery {gallery_id!r} holds a template of the wrong "
                                  f"length ({template_id})")
        return data

    def _read_template(self, gallery_id: str, row: tuple) -> Template:
        template_id, subject_id, name, version, inference, precision, dim, blob = row[:8]
        embedding = self._unseal(gallery_id, subject_id, template_id, (name, version, inference, precision), dim,
                                 row[-1], blob)
        return _template(row, embedding)

    def _insert_templates(self, db: Database, gallery_id: str, templates: Sequence[Template]) -> None:
        rows = []
        for t in templates:
            key_id, blob = self._seal(gallery_id, t)
            rows.append((gallery_id, t.id, t.subject_id, t.model.name, t.model.version, t.model.inference,
                         t.model.precision, len(t.embedding), blob, _face_json(t),
                         json.dumps(t.quality) if t.quality else None, t.upload_hash, t.created_at, key_id))
        db.executemany(f"INSERT INTO templates (gallery_id, {_TEMPLATE_COLUMNS}) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def _grouped(self, gallery_id: str, model: EmbeddingModel, created_at: float, revision: int, rows: list[tuple],
                 changed: list[str] | None = None) -> GalleryTemplates:
        """(subject_id, dim, embedding, id, precision, key_id) rows, grouped by subject, as
        GalleryTemplates. A template that does not decrypt is left out, with an error in the log: one
        damaged row costs its subject, not the gallery's search."""
        dims = {row[1] for row in rows}
        if len(dims) > 1:
            raise mixed_dimensions(dims)
        dim = dims.pop() if dims else 0
        subjects, blobs = [], []
        for subject_id, _, blob, template_id, precision, key_id in rows:
            data = bytes(blob)
            if key_id is not None:  # sealed: opened one by one; rows in the clear are read in one go
                try:
                    data = self._unsealed_bytes(gallery_id, subject_id, template_id,
                                                (model.name, model.version, model.inference, precision), dim, key_id,
                                                data)
                except CorruptTemplate as error:
                    logger.error("search leaves a template out: %s", error.message)
                    continue
            subjects.append(subject_id)
            blobs.append(data)
        matrix = np.frombuffer(b"".join(blobs), "<f4").reshape(len(blobs), dim).astype(np.float32)
        return GalleryTemplates(created_at, revision, subjects, matrix, changed)

    def reseal(self, key_id: str, batch: int) -> int:
        """Up to `batch` templates not sealed with `key_id` (those in the clear included) sealed with
        it, in one transaction; how many. Run until it answers 0: a kill loses at most the batch in
        flight, which the next run does again, and every row opens under the key it names throughout."""
        if self.cipher is None or key_id not in self.cipher.key_ids:
            raise MissingTemplateKey(f"key {key_id!r} is not among the template keys given")
        with self._transaction(write=True) as db:
            rows = db.execute(f"SELECT gallery_id, {_TEMPLATE_COLUMNS} FROM templates WHERE key_id IS NULL OR key_id <> ? "
                              f"ORDER BY seq LIMIT ?{self.for_update}", (key_id, batch))
            for gallery_id, *row in rows:
                template = self._read_template(gallery_id, tuple(row))
                sealed_with, blob = self._seal(gallery_id, template, key_id)
                db.execute("UPDATE templates SET embedding = ?, key_id = ? WHERE id = ?", (blob, sealed_with, template.id))
        return len(rows)

    def sealed_counts(self) -> dict[str | None, int]:
        """Templates by the key they are sealed with (None: in the clear)."""
        with self._transaction(write=False) as db:
            return {key_id: int(count) for key_id, count in
                    db.execute("SELECT key_id, COUNT(*) FROM templates GROUP BY key_id")}

    # -- keys -------------------------------------------------------------------------------

    _KEY = ("SELECT id, name, secret_hash, scopes, galleries, created_at, expires_at, last_used_at, revoked_at, "
            "rate_per_s, burst FROM api_keys")

    def create_key(self, key: KeyRecord, audit: AuditEvent) -> None:
        with self._transaction(write=True) as db:
            db.execute("INSERT INTO api_keys (id, name, secret_hash, scopes, galleries, created_at, expires_at, "
                       "rate_per_s, burst) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (key.id, key.name, key.secret_hash, ",".join(key.scopes),
                        None if key.galleries is None else json.dumps(list(key.galleries)), key.created_at,
                        key.expires_at, key.rate_per_s, key.burst))
            self._audit(db, audit)

    def get_key(self, key_id: str) -> KeyRecord | None:
        with self._transaction(write=False) as db:
            rows = db.execute(self._KEY + " WHERE id = ?", (key_id,))
        return _key(rows[0]) if rows else None

    def list_keys(self, after: str | None, limit: int) -> Page:
        with self._transaction(write=False) as db:
            rows = db.execute(self._KEY + " WHERE id > ? ORDER BY id LIMIT ?", (after or "", limit + 1))
        return _page([_key(row) for row in rows], limit)

    def revoke_key(self, key_id: str, audit: AuditEvent) -> KeyRecord:
        with self._transaction(write=True) as db:
            if not db.execute("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? RETURNING id",
                              (now(), key_id)):
                raise NotFound("key", f"no key {key_id!r}")
            self._audit(db, audit)
            return _key(db.execute(self._KEY + " WHERE id = ?", (key_id,))[0])

    def touch_key(self, key_id: str, at: float) -> None:
        with self._transaction(write=True) as db:
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (at, key_id))

    def key_count(self) -> int:
        with self._transaction(write=False) as db:
            return int(db.execute("SELECT COUNT(*) FROM api_keys")[0][0])

    # -- jobs ---------------------------------------------------------------------------------

    _JOB = ("SELECT id, gallery_id, kind, key_id, parameters, state, done, total, cancel_requested, created_at, "
            "updated_at, finished_at, summary FROM jobs")

    def create_job(self, job: Job, audit: AuditEvent | None = None) -> None:
        with self._transaction(write=True) as db:
            if not db.execute("SELECT 1 FROM galleries WHERE id = ?", (job.gallery_id,)):
                raise gallery_not_found(job.gallery_id)
            db.execute("INSERT INTO jobs (id, gallery_id, kind, key_id, parameters, state, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (job.id, job.gallery_id, job.kind, job.key_id,
                                                           json.dumps(job.parameters), job.state, job.created_at,
                                                           job.updated_at))
            self._audit(db, audit)

    def get_job(self, gallery_id: str, job_id: str) -> Job:
        with self._transaction(write=False) as db:
            rows = db.execute(self._JOB + " WHERE gallery_id = ? AND id = ?", (gallery_id, job_id))
            if not rows and not db.execute("SELECT 1 FROM galleries WHERE id = ?", (gallery_id,)):
                raise gallery_not_found(gallery_id)
        if not rows:
            raise NotFound("job", f"no job {job_id!r} of gallery {gallery_id!r}")
        return _job(rows[0])

    def job_progress(self, job_id: str, done: int, total: int) -> bool:
        with self._transaction(write=True) as db:
            rows = db.execute("UPDATE jobs SET done = ?, total = ?, updated_at = ? WHERE id = ? AND state = 'running' "
                              "RETURNING cancel_requested", (done, total, now(), job_id))
        return not rows or bool(rows[0][0])  # a job deleted with its gallery stops too

    def finish_job(self, job_id: str, state: JobState, summary: dict,
                   pairs: Sequence[tuple[str, str, float, float]] = ()) -> None:
        with self._transaction(write=True) as db:
            finished = now()
            if not db.execute("UPDATE jobs SET state = ?, summary = ?, finished_at = ?, updated_at = ? WHERE id = ? "
                              "RETURNING id", (state, json.dumps(summary), finished, finished, job_id)):
                return  # deleted with its gallery meanwhile
            db.executemany("INSERT INTO job_pairs (job_id, seq, first_subject, second_subject, score, threshold) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           [(job_id, seq, *pair) for seq, pair in enumerate(pairs, start=1)])

    def cancel_job(self, gallery_id: str, job_id: str, audit: AuditEvent | None = None) -> Job:
        with self._transaction(write=True) as db:
            rows = db.execute(self._JOB + " WHERE gallery_id = ? AND id = ?", (gallery_id, job_id))
            if not rows:
                if not db.execute("SELECT 1 FROM galleries WHERE id = ?", (gallery_id,)):
                    raise gallery_not_found(gallery_id)
                raise NotFound("job", f"no job {job_id!r} of gallery {gallery_id!r}")
            job = _job(rows[0])
            if job.state_at(now()) == "running":
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            else:  # finished, or its replica stopped
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            self._audit(db, audit)
        return job

    def _forget_in_reports(self, db: Database, gallery_id: str, subject_id: str) -> None:
        """A deleted subject's pairs in the gallery's reports go with it."""
        db.execute("DELETE FROM job_pairs WHERE job_id IN (SELECT id FROM jobs WHERE gallery_id = ?) AND "
                   "(first_subject = ? OR second_subject = ?)", (gallery_id, subject_id, subject_id))

    def job_pairs(self, job_id: str, after: int, limit: int) -> list[SubjectPair]:
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT seq, first_subject, second_subject, score, threshold FROM job_pairs "
                              "WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?", (job_id, after, limit))
        return [SubjectPair(int(seq), first, second, float(score), float(threshold))
                for seq, first, second, score, threshold in rows]

    # -- the audit trail ----------------------------------------------------------------------

    _AUDIT = ("SELECT key_id, action, gallery_id, subject_id, status, request_id, matched, consent_ref, seq, at, "
              "prev_hash, hash FROM audit")

    def _audit(self, db: Database, event: AuditEvent | None) -> AuditEntry | None:
        """Append `event` to the chain, in the caller's transaction: the head's row is locked until
        it ends, so entries are chained in the order they commit, whichever replica writes them."""
        if event is None:
            return None
        previous = db.execute(f"SELECT hash FROM audit_head WHERE id = 1{self.for_update}")[0][0]
        at = now()
        digest = entry_hash(event, at, previous)
        seq = db.execute("INSERT INTO audit (at, key_id, action, gallery_id, subject_id, status, matched, request_id, "
                         "prev_hash, hash, consent_ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
                         (at, event.key_id, event.action, event.gallery_id, event.subject_id, event.status,
                          None if event.matched is None else int(event.matched), event.request_id, previous,
                          digest, event.consent_ref))[0][0]
        db.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, digest))
        return AuditEntry(**vars(event), seq=int(seq), at=at, prev_hash=previous, hash=digest)

    def record(self, event: AuditEvent) -> AuditEntry:
        with self._transaction(write=True) as db:
            entry = self._audit(db, event)
            if event.matched and event.gallery_id and event.subject_id:  # a match is the subject's activity
                db.execute("UPDATE subjects SET last_active_at = ? WHERE gallery_id = ? AND id = ?",
                           (entry.at, event.gallery_id, event.subject_id))
            return entry

    def sweep_expired(self, at: float, dry_run: bool = False, gallery_id: str | None = None,
                      limit: int = 1000) -> list[Expired]:
        """Subjects past their gallery's retention at `at` (at most `limit`), deleted for real with an
        audit entry each unless `dry_run`. Replicas sweep one at a time: a sweep that finds another
        under way finds nothing."""
        where = ("((g.max_age_days IS NOT NULL AND COALESCE(s.enrolled_at, s.created_at) + g.max_age_days * ? <= ?) "
                 "OR (g.max_inactive_days IS NOT NULL AND COALESCE(s.last_active_at, s.enrolled_at, s.created_at) "
                 "+ g.max_inactive_days * ? <= ?))")
        params: list[Any] = [DAY_S, at, DAY_S, at]
        if gallery_id is not None:
            where += " AND s.gallery_id = ?"
            params.append(gallery_id)
        with self._transaction(write=not dry_run) as db:
            if not dry_run and not self._lock_sweep(db):
                return []
            rows = db.execute("SELECT s.gallery_id, s.id, s.created_at, s.enrolled_at, s.last_active_at, "
                              "g.max_inactive_days, g.max_age_days FROM subjects s JOIN galleries g "
                              f"ON g.id = s.gallery_id WHERE {where} ORDER BY s.gallery_id, s.id LIMIT ?",
                              (*params, limit))
            expired = [Expired(gallery, subject, Retention(inactive, age).expires_at(created, enrolled, active))
                       for gallery, subject, created, enrolled, active, inactive, age in rows]
            if not dry_run:
                request_id = f"retention-{uuid.uuid4().hex}"
                for item in expired:
                    db.execute("DELETE FROM templates WHERE gallery_id = ? AND subject_id = ?",
                               (item.gallery_id, item.subject_id))
                    db.execute("DELETE FROM subjects WHERE gallery_id = ? AND id = ?", (item.gallery_id, item.subject_id))
                    self._forget_in_reports(db, item.gallery_id, item.subject_id)
                    self._audit(db, AuditEvent("retention", "subject.expire", item.gallery_id, item.subject_id, 200,
                                               request_id))
                for gallery in dict.fromkeys(item.gallery_id for item in expired):
                    self._next_revision(db, gallery, [item.subject_id for item in expired if item.gallery_id == gallery])
        if expired and not dry_run:
            self._after_delete()
        return expired

    def _lock_sweep(self, db: Database) -> bool:
        """Whether this transaction may sweep (SQLite's write transaction already excludes others)."""
        return True

    def audit_entries(self, query: AuditQuery, limit: int) -> list[AuditEntry]:
        where, params = ["seq > ?"], [query.after]
        for column, value in (("gallery_id", query.gallery_id), ("subject_id", query.subject_id),
                              ("key_id", query.key_id), ("action", query.action)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.since is not None:
            where.append("at >= ?")
            params.append(query.since)
        if query.until is not None:
            where.append("at < ?")
            params.append(query.until)
        with self._transaction(write=False) as db:
            rows = db.execute(f"{self._AUDIT} WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", (*params, limit))
        return [_audit_entry(row) for row in rows]

    def audit_chain(self) -> tuple[str, tuple[int, str] | None, Iterator[AuditEntry]]:
        with self._transaction(write=False) as db:
            seq, digest, anchor = db.execute("SELECT seq, hash, anchor FROM audit_head WHERE id = 1")[0]

        def entries() -> Iterator[AuditEntry]:
            after = 0
            while page := self.audit_entries(AuditQuery(after=after), 1000):
                yield from page
                after = page[-1].seq

        return anchor, (int(seq), digest) if seq else None, entries()

    def prune_audit(self, before: float) -> int:
        with self._transaction(write=True) as db:
            db.execute(f"SELECT seq FROM audit_head WHERE id = 1{self.for_update}")
            last = db.execute("SELECT seq, hash FROM audit WHERE at < ? ORDER BY seq DESC LIMIT 1", (before,))
            if not last:
                return 0
            removed = db.execute("DELETE FROM audit WHERE seq <= ? RETURNING seq", (last[0][0],))
            db.execute("UPDATE audit_head SET anchor = ? WHERE id = 1", (last[0][1],))
        return len(removed)

    def _after_delete(self) -> None:
        """Where the back-end keeps deleted rows' bytes around (SQLite's write-ahead log), drop them."""


def _page(items: list, limit: int) -> Page:
    return Page(items[:limit], items[limit - 1].id if len(items) > limit else None)


def _reach_filter(reach: Sequence[str] | None) -> tuple[str, list[str]]:
    """An SQL condition on g.id for a key's gallery patterns (exact ids, 'prefix*'), and its values."""
    if reach is None:
        return "", []
    exact = [pattern for pattern in reach if not pattern.endswith("*")]
    prefixes = [pattern[:-1] for pattern in reach if pattern.endswith("*")]
    terms = [f"g.id IN ({', '.join('?' * len(exact))})"] if exact else []
    terms += ["substr(g.id, 1, ?) = ?"] * len(prefixes)
    params = exact + [value for prefix in prefixes for value in (len(prefix), prefix)]
    return f" AND ({' OR '.join(terms) or '1 = 0'})", params


def _key(row: tuple) -> KeyRecord:
    key_id, name, digest, scopes, galleries, created, expires, used, revoked, rate, burst = row
    return KeyRecord(key_id, name, digest, tuple(scopes.split(",")) if scopes else (),
                     None if galleries is None else tuple(json.loads(galleries)), created, expires, used, revoked,
                     rate, burst)


def _audit_entry(row: tuple) -> AuditEntry:
    key_id, action, gallery_id, subject_id, status, request_id, matched, consent_ref, seq, at, prev_hash, digest = row
    return AuditEntry(key_id, action, gallery_id, subject_id, int(status), request_id,
                      None if matched is None else bool(matched), consent_ref, int(seq), float(at), prev_hash, digest)


def _gallery(row: tuple) -> Gallery:
    gallery_id, created, subjects, templates, inactive, age, consent, duplicate_check = row
    return Gallery(gallery_id, created, subjects, templates, Retention(inactive, age), bool(consent), duplicate_check)


def _subject(row: tuple, templates: tuple[Template, ...] = ()) -> Subject:
    gallery_id, subject_id, created, updated, count, enrolled, active, consent_ref, inactive, age, duplicates = row
    flagged = tuple(PossibleDuplicate(**match) for match in json.loads(duplicates)) if duplicates else ()
    return Subject(gallery_id, subject_id, created, updated, count, templates, enrolled, active, consent_ref,
                   Retention(inactive, age).expires_at(created, enrolled, active), flagged)


def _job(row: tuple) -> Job:
    (job_id, gallery_id, kind, key_id, parameters, state, done, total, cancel, created, updated, finished,
     summary) = row
    return Job(job_id, gallery_id, kind, key_id, json.loads(parameters), state, created, updated, int(done),
               int(total), finished, json.loads(summary) if summary else None, bool(cancel))
