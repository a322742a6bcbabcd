"""The storage contract: galleries of subjects, each subject's templates, and the errors a store raises.

A template is an embedding with what made it and what it was made from (the face's box, landmarks and
detection score), never the image. Every write is one transaction: a subject is enrolled with all the
faces of a request or none, and a delete removes everything below what it names. Two back-ends
implement the contract (app.storage.sqlite, app.storage.postgres); their tests are one suite.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from app.storage.audit import AuditEntry, AuditEvent
from model.types import EmbeddingModel

# Ids name galleries and subjects in URLs and logs: a conservative alphabet keeps them safe to echo.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# The schema version this code writes; a database of a newer one is refused (SchemaTooNew).
SCHEMA_VERSION = 7


class StorageError(Exception):
    """Base of the errors a store raises; each maps to one stable API error code (app.errors)."""

    code = "storage_unavailable"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class StorageUnavailable(StorageError):
    """The database cannot be reached or used now; the caller may retry."""


class SchemaTooNew(StorageUnavailable):
    """The database was made by a newer version of the service; this one will not touch it."""


class MissingTemplateKey(StorageUnavailable):
    """Templates are sealed with a key this service was not given: it touches no data until it is."""


class ConsentRequired(StorageError):
    """An enrolment into a gallery that requires a consent reference, without one."""

    code = "consent_required"


class CorruptTemplate(StorageError):
    """A stored template that does not decrypt for its row: moved, edited or damaged."""

    code = "template_corrupted"


class NotFound(StorageError):
    def __init__(self, what: str, message: str):
        super().__init__(message)
        self.code = f"{what}_not_found"


def gallery_not_found(gallery_id: str) -> NotFound:
    """The one answer for a gallery that is not there, or not within a key's reach (app.services.galleries)."""
    return NotFound("gallery", f"no gallery {gallery_id!r}")


class Conflict(StorageError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def mixed_dimensions(dims: set[int]) -> Conflict:
    """The refusal of a gallery whose templates of one model have several dimensions."""
    return Conflict("conflict", f"templates of one model with several dimensions: {sorted(dims)}")


def check_id(kind: str, value: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise ValueError(f"{kind} id must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter "
                         "or digit")
    return value


@dataclass(frozen=True)
class NewTemplate:
    """A template to store: its embedding (unit length, float32) and what it came from."""

    embedding: np.ndarray
    model: EmbeddingModel
    box: tuple[float, float, float, float] | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None
    detection_score: float | None = None
    quality: dict | None = None
    upload_hash: str | None = None  # a salted hash of the uploaded file, to refuse it twice


@dataclass(frozen=True)
class Template(NewTemplate):
    id: str = ""
    subject_id: str = ""
    created_at: float = 0.0


DAY_S = 86400.0


@dataclass(frozen=True)
class Retention:
    """How long a gallery keeps a subject: `max_age_days` after its first enrolment, and
    `max_inactive_days` after its last successful verification, search match or enrolment; the
    sooner of the two. None: no limit of that kind."""

    max_inactive_days: float | None = None
    max_age_days: float | None = None

    def expires_at(self, created_at: float, enrolled_at: float | None, last_active_at: float | None) -> float | None:
        ends = []
        if self.max_age_days is not None:
            ends.append((enrolled_at or created_at) + self.max_age_days * DAY_S)
        if self.max_inactive_days is not None:
            ends.append((last_active_at or enrolled_at or created_at) + self.max_inactive_days * DAY_S)
        return min(ends, default=None)


# What a gallery does where a new subject's first faces match someone enrolled already (its
# enrolment's duplicate check): nothing, refuse them (409 duplicate_identity), or store and flag them.
DuplicateCheck = Literal["off", "refuse", "report"]


@dataclass(frozen=True)
class PossibleDuplicate:
    """A subject a new subject's faces matched at enrolment: the search score and its threshold."""

    subject: str
    score: float
    threshold: float


@dataclass(frozen=True)
class Subject:
    gallery_id: str
    id: str
    created_at: float
    updated_at: float
    template_count: int
    templates: tuple[Template, ...] = field(default=(), repr=False)  # filled by get_subject only
    enrolled_at: float | None = None  # its first enrolment
    last_active_at: float | None = None  # its last enrolment, matched verification or search match
    consent_ref: str | None = None  # the caller's reference to the person's release, e.g. a signed form's id
    expires_at: float | None = None  # under its gallery's retention; None: kept until deleted
    possible_duplicates: tuple[PossibleDuplicate, ...] = ()  # flagged at its enrolment (duplicate check report)


@dataclass(frozen=True)
class Gallery:
    id: str
    created_at: float
    subject_count: int
    template_count: int
    retention: Retention = Retention()
    require_consent: bool = False  # an enrolment must give a consent_ref (or the subject have one)
    duplicate_check: DuplicateCheck = "off"


@dataclass(frozen=True)
class Expired:
    """A subject past its gallery's retention, as a sweep finds (and deletes) it."""

    gallery_id: str
    subject_id: str
    expires_at: float


@dataclass(frozen=True)
class Deleted:
    """What a delete removed, as its answer reports it."""

    galleries: int = 0
    subjects: int = 0
    templates: int = 0


JobState = Literal["running", "done", "cancelled", "failed"]
STALE_S = 120.0  # a running job whose progress has not moved for this long lost its replica


@dataclass(frozen=True)
class Job:
    """A long piece of work over a gallery (the duplicate report), run by one replica; its progress
    (`done` of `total`) is written as it goes, so any replica answers for it. A running job whose
    progress has not moved for a while lost its replica (app.services.duplicates)."""

    id: str
    gallery_id: str
    kind: str
    key_id: str
    parameters: dict
    state: JobState
    created_at: float
    updated_at: float
    done: int = 0
    total: int = 0
    finished_at: float | None = None
    summary: dict | None = None  # what the finished job found, or why it failed
    cancel_requested: bool = False

    def state_at(self, at: float) -> str:
        """The state as a client sees it: `interrupted` for a running job whose replica stopped."""
        return "interrupted" if self.state == "running" and at - self.updated_at > STALE_S else self.state


@dataclass(frozen=True)
class SubjectPair:
    """Two subjects of a gallery that look like one person: the distance between their centroids
    and the threshold it was judged at; `seq` orders a report's pairs (closest first)."""

    seq: int
    first: str
    second: str
    score: float
    threshold: float


@dataclass(frozen=True)
class Page:
    """One page of a listing in id order; `next_after` is the last id, None on the last page."""

    items: list
    next_after: str | None


@dataclass(frozen=True)
class Candidate:
    """A subject found by a search: its score (distance to its centroid) and number of templates."""

    subject: str
    score: float
    templates: int


@dataclass(frozen=True)
class KeyRecord:
    """A stored API key: never its secret, only the secret's hash (app.security)."""

    id: str
    name: str
    secret_hash: str
    scopes: tuple[str, ...]
    galleries: tuple[str, ...] | None  # exact ids and prefixes ("acme-*"); None: every gallery
    created_at: float
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None
    rate_per_s: float | None = None  # None: the service's default
    burst: int | None = None

    def active(self, at: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or at < self.expires_at)


@dataclass(frozen=True)
class AuditQuery:
    """A filter on the audit trail; every field None is no filter. `after`: the last seq seen."""

    gallery_id: str | None = None
    subject_id: str | None = None
    key_id: str | None = None
    action: str | None = None
    since: float | None = None
    until: float | None = None
    after: int = 0


# Called inside the enrolment's transaction with the subject's stored templates; raises to refuse.
EnrolmentCheck = Callable[[Sequence[Template]], None]


@dataclass(frozen=True)
class GalleryTemplates:
    """A gallery's templates of one model, in one transaction: each one's subject id (rows grouped
    by subject, sorted) and the embeddings (N, dim). From gallery_changes, only those of the
    subjects whose templates changed after a given revision (`changed` names them all, those left
    with none too); `changed` is None for the whole gallery."""

    created_at: float  # tells the gallery from one deleted and created again under its id
    revision: int
    subject_ids: list[str]
    embeddings: np.ndarray
    changed: list[str] | None = None


def now() -> float:
    return time.time()


class Storage(ABC):
    """Galleries -> subjects -> templates; the API keys; the audit trail. Methods block (run them off
    the event loop) and raise StorageError subclasses only: NotFound, Conflict, StorageUnavailable.

    Every write that changes who is stored takes the audit event that records it, and appends it to
    the audit trail in the write's own transaction: no committed write lacks its entry, and no
    rolled-back write has one (app.storage.audit)."""

    url_scheme: str

    @abstractmethod
    def migrate(self) -> None:
        """Create or upgrade the schema to SCHEMA_VERSION; SchemaTooNew where the database is newer."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers now."""

    @abstractmethod
    def upload_salt(self) -> bytes:
        """This database's secret salt for hashing uploads (made once, kept in the database)."""

    @abstractmethod
    def create_gallery(self, gallery_id: str, audit: AuditEvent | None = None, retention: Retention = Retention(),
                       require_consent: bool = False, duplicate_check: DuplicateCheck = "off") -> Gallery: ...

    @abstractmethod
    def set_gallery_policy(self, gallery_id: str, retention: Retention, require_consent: bool,
                           audit: AuditEvent | None = None, duplicate_check: DuplicateCheck = "off") -> Gallery: ...

    @abstractmethod
    def get_gallery(self, gallery_id: str) -> Gallery: ...

    @abstractmethod
    def list_galleries(self, after: str | None, limit: int, reach: Sequence[str] | None = None) -> Page:
        """Galleries in id order; only those `reach` names (exact ids and 'prefix*'), where given."""

    @abstractmethod
    def delete_gallery(self, gallery_id: str, audit: AuditEvent | None = None) -> Deleted: ...

    @abstractmethod
    def create_subject(self, gallery_id: str, subject_id: str, audit: AuditEvent | None = None) -> Subject: ...

    @abstractmethod
    def get_subject(self, gallery_id: str, subject_id: str) -> Subject:
        """The subject with its templates, oldest first."""

    @abstractmethod
    def list_subjects(self, gallery_id: str, after: str | None, limit: int) -> Page: ...

    @abstractmethod
    def delete_subject(self, gallery_id: str, subject_id: str, audit: AuditEvent | None = None) -> Deleted: ...

    @abstractmethod
    def add_templates(
        self, gallery_id: str, subject_id: str, templates: Sequence[NewTemplate], check: EnrolmentCheck,
        max_templates: int, audit: AuditEvent | None = None, consent_ref: str | None = None,
        possible_duplicates: Sequence[PossibleDuplicate] = (),
    ) -> list[Template]:
        """All of `templates` or none, after `check` accepted the subject's stored templates, with
        the subject locked against concurrent enrolments and deletes for the transaction's length.
        Conflict duplicate_face where an upload hash is already in the gallery, subject_full beyond
        max_templates; ConsentRequired where the gallery requires a consent reference and neither the
        subject nor the request has one. The subject's enrolment and activity times move on; where
        `possible_duplicates` are given, the subject is flagged with them."""

    @abstractmethod
    def clear_duplicates(self, gallery_id: str, subject_id: str, audit: AuditEvent | None = None) -> Subject:
        """The subject's possible-duplicate flag removed (a reviewer found it to be another person)."""

    @abstractmethod
    def delete_template(self, gallery_id: str, subject_id: str, template_id: str,
                        audit: AuditEvent | None = None) -> Deleted: ...

    @abstractmethod
    def import_subjects(self, gallery_id: str, subjects: Sequence[tuple[str, Sequence[NewTemplate]]],
                        audit: AuditEvent | None = None, consent_refs: Mapping[str, str] | None = None) -> int:
        """New subjects with their templates, in one transaction, without enrolment checks (moving a
        gallery from another system, or a benchmark's); all or none: Conflict for a taken id.
        Returns the templates stored."""

    @abstractmethod
    def gallery_revision(self, gallery_id: str) -> int:
        """A number every write to the gallery's templates changes (NotFound for no gallery)."""

    @abstractmethod
    def gallery_templates(self, gallery_id: str, model: EmbeddingModel) -> GalleryTemplates:
        """The gallery's templates of `model` (name, version, inference; any precision), at its
        current revision."""

    @abstractmethod
    def gallery_changes(self, gallery_id: str, model: EmbeddingModel, created_at: float,
                        since: int) -> GalleryTemplates | None:
        """The templates of `model` of every subject whose templates changed after revision `since`
        of the gallery created at `created_at`, at its current revision; None where that cannot be
        told from the changes logged (the gallery was created again, the log no longer reaches back
        that far, or so many subjects changed that reading the whole gallery is as quick)."""

    def nearest(self, gallery_id: str, model: EmbeddingModel, probe: np.ndarray,
                top: int) -> tuple[int, list[Candidate]] | None:
        """A search by the database's own index, where it has one: the gallery's size and its `top`
        subjects nearest `probe`, nearest first, exact. None: it has none (the service searches
        its own matrix of gallery_templates, app.storage.search_index)."""
        return None

    # -- jobs ---------------------------------------------------------------------------------

    @abstractmethod
    def create_job(self, job: Job, audit: AuditEvent | None = None) -> None: ...

    @abstractmethod
    def get_job(self, gallery_id: str, job_id: str) -> Job:
        """NotFound job_not_found where the gallery has no such job."""

    @abstractmethod
    def job_progress(self, job_id: str, done: int, total: int) -> bool:
        """Record a running job's progress; whether it was asked to stop (it stops, cancelled)."""

    @abstractmethod
    def finish_job(self, job_id: str, state: JobState, summary: dict,
                   pairs: Sequence[tuple[str, str, float, float]] = ()) -> None:
        """The job ended: its state, what it found, and its pairs (first, second, score, threshold),
        in one transaction."""

    @abstractmethod
    def cancel_job(self, gallery_id: str, job_id: str, audit: AuditEvent | None = None) -> Job:
        """Ask a running job to stop; a finished or interrupted one is deleted with its results, in
        one transaction; the job as it was."""

    @abstractmethod
    def job_pairs(self, job_id: str, after: int, limit: int) -> list[SubjectPair]:
        """A job's pairs in order, after seq `after`, at most `limit`."""

    # -- templates at rest ----------------------------------------------------------------------

    @abstractmethod
    def reseal(self, key_id: str, batch: int) -> int:
        """Up to `batch` templates not sealed with template key `key_id` sealed with it, in one
        transaction; how many (0: none left)."""

    @abstractmethod
    def sealed_counts(self) -> dict[str | None, int]:
        """Templates by the key they are sealed with (None: in the clear)."""

    # -- keys -------------------------------------------------------------------------------

    @abstractmethod
    def create_key(self, key: KeyRecord, audit: AuditEvent) -> None: ...

    @abstractmethod
    def get_key(self, key_id: str) -> KeyRecord | None: ...

    @abstractmethod
    def list_keys(self, after: str | None, limit: int) -> Page:
        """Keys in id order, revoked ones included."""

    @abstractmethod
    def revoke_key(self, key_id: str, audit: AuditEvent) -> KeyRecord:
        """Revoked from now (NotFound key_not_found); revoking twice keeps the first time."""

    @abstractmethod
    def touch_key(self, key_id: str, at: float) -> None:
        """Record that the key was used at `at`."""

    @abstractmethod
    def key_count(self) -> int:
        """How many keys were ever stored, revoked and expired ones included."""

    # -- the audit trail ----------------------------------------------------------------------

    @abstractmethod
    def record(self, event: AuditEvent) -> AuditEntry:
        """Append a decision's entry (a subject verification, a search) in a transaction of its own; a
        match is the subject's activity too (its retention's max_inactive_days counts from it)."""

    @abstractmethod
    def sweep_expired(self, at: float, dry_run: bool = False, gallery_id: str | None = None,
                      limit: int = 1000) -> list[Expired]:
        """Subjects past their gallery's retention at `at`, deleted for real with an audit entry each
        (subject.expire, key `retention`) unless `dry_run`; one replica sweeps at a time."""

    @abstractmethod
    def audit_entries(self, query: AuditQuery, limit: int) -> list[AuditEntry]:
        """Entries matching `query` in sequence order, after `query.after`, at most `limit`."""

    @abstractmethod
    def audit_chain(self) -> tuple[str, tuple[int, str] | None, Iterator[AuditEntry]]:
        """For a walk of the whole chain: the anchor (the hash before the first entry kept), the
        recorded head (the last entry's seq and hash; None: no entry yet), and every entry in order."""

    @abstractmethod
    def prune_audit(self, before: float) -> int:
        """Delete the entries older than `before`, moving the anchor on; the number deleted."""

    @abstractmethod
    def close(self) -> None: ...
