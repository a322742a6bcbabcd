"""The audit trail's entries and their hash chain.

Every entry carries the SHA-256 of the entry before it (`prev_hash`) and of itself (`hash`, over its
fields and `prev_hash`), so an entry edited, deleted or inserted anywhere breaks the chain at that
point: `verify_chain` names the first entry where it breaks. The store keeps the chain's head (the
last entry's sequence number and hash) beside it, so entries cut off the end are caught too, and the
anchor (the hash before the first entry kept) where retention pruned the oldest entries.

An entry never holds an image, an embedding or a score: who (key id), did what (action), to which
gallery and subject, with what outcome (status; matched or not for a decision), in which request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

GENESIS = "0" * 64

# What is recorded: every change of who is stored, every key change, every decision about a stored person.
ACTIONS = (
    "gallery.create", "gallery.delete", "subject.create", "subject.delete", "subject.enrol",
    "template.delete", "gallery.import", "subject.verify", "gallery.search", "key.create", "key.revoke",
    "gallery.update", "subject.expire", "subject.export", "subject.duplicates", "subject.clear_duplicates",
    "gallery.duplicates", "gallery.duplicates_cancel",
)


@dataclass(frozen=True)
class AuditEvent:
    """What a write or a decision records: filled by the service that does it."""

    key_id: str
    action: str
    gallery_id: str | None
    subject_id: str | None
    status: int
    request_id: str
    matched: bool | None = None  # a decision's outcome (subject verification, search); None for a write
    consent_ref: str | None = None  # the release an enrolment gave, where it gave one

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown audit action {self.action!r}")


@dataclass(frozen=True)
class AuditEntry(AuditEvent):
    seq: int = 0
    at: float = 0.0
    prev_hash: str = GENESIS
    hash: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def entry_hash(event: AuditEvent, at: float, prev_hash: str) -> str:
    """The hash of an entry: its fields, its time and the hash before it, in one canonical text."""
    fields = {name: getattr(event, name) for name in
              ("key_id", "action", "gallery_id", "subject_id", "status", "request_id", "matched")}
    if event.consent_ref is not None:
        fields["consent_ref"] = event.consent_ref
    text = json.dumps({**fields, "at": repr(float(at)), "prev_hash": prev_hash}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The walk of a chain: how many entries were checked, and the first broken one (None: intact)."""

    checked: int
    broken_at: int | None = None
    reason: str | None = None

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify_chain(entries: Iterable[AuditEntry], anchor: str, head: tuple[int, str] | None) -> ChainReport:
    """Walk the entries in sequence order from the anchor (the hash before the first kept entry),
    checking each one's hash and link; then that the last one is the recorded head."""
    previous, last, checked = anchor, None, 0
    for entry in entries:
        if entry.prev_hash != previous:
            return ChainReport(checked, entry.seq, "its prev_hash is not the hash of the entry before it "
                               "(an entry before it was deleted, inserted or edited)")
        if entry_hash(entry, entry.at, entry.prev_hash) != entry.hash:
            return ChainReport(checked, entry.seq, "its hash does not match its fields (the entry was edited)")
        previous, last, checked = entry.hash, entry, checked + 1
    if head is not None and (last is None or (last.seq, last.hash) != head):
        return ChainReport(checked, head[0], "the chain ends before its recorded head (entries were cut off the end)")
    return ChainReport(checked)
