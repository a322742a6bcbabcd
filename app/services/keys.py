"""Who a request acts as (KeyRing), and the keys and the audit trail as an administrator manages them.

A stored key is looked up by its public id at most once every KEY_CACHE_S on each replica, so a
revocation or an expiry written by any replica (or by `facever keys revoke`) is refused everywhere
within that time, with no restart, and a request costs no database round trip in between.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from app.logging import request_id_var
from app.security import (
    SCOPES,
    Principal,
    environment_principal,
    hash_matches,
    key_id_of,
    make_secret,
    secret_hash,
)
from app.settings import Settings
from app.storage.audit import AuditEntry, AuditEvent
from app.storage.base import AuditQuery, KeyRecord, Page, Storage, StorageUnavailable, now
from app.storage.supervisor import StorageSupervisor

# How long a replica trusts what it read of a key (and of whether any key exists).
KEY_CACHE_S = 0.5
# How often a key's last_used_at is written, at most, by one replica.
TOUCH_EVERY_S = 60.0


def audit_event(principal: Principal, action: str, gallery_id: str | None, subject_id: str | None, status: int,
                matched: bool | None = None) -> AuditEvent:
    """What the trail records of a write or a decision made for `principal` in this request."""
    return AuditEvent(principal.key_id, action, gallery_id, subject_id, status, request_id_var.get(), matched)


class KeyRing:
    """The keys from the environment (FACEVER_API_KEYS, FACEVER_WRITE_API_KEYS) and those stored.

    A key given and refused (unknown, wrong, revoked, expired) stands for nobody. With no key in the
    environment and none ever stored, the service is open, as before keys were data; once a key has
    been stored it never reopens by itself, not when the last key is revoked or expires. Where the
    store cannot be read and has never been, the open service is kept to what stores nothing (the
    verify scope): a replica that starts before its database never opens stored galleries."""

    def __init__(self, settings: Settings, supervisor: StorageSupervisor | None):
        self.settings = settings
        self.supervisor = supervisor
        self._records: dict[str, tuple[float, KeyRecord | None]] = {}
        self._count: tuple[float, int] | None = None  # (read at, keys ever stored)
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def authenticate(self, given: str | None, scope: str | None) -> Principal | None:
        """The principal `given` stands for; None where it stands for nobody (a wrong, revoked or
        expired key, or none where one is needed). Blocking: it may read the store."""
        settings = self.settings
        if given:
            principal = environment_principal(given, settings.api_keys, settings.write_api_keys)
            if principal is None and self.supervisor is not None and (key_id := key_id_of(given)) is not None:
                principal = self._stored(key_id, given)
            return principal
        if settings.api_keys:
            return None
        open_scopes = {"verify", "read"} if settings.write_api_keys else set(SCOPES)
        if self.supervisor is not None:
            try:
                if self._stored_keys():
                    return None
            except StorageUnavailable:
                if scope != "verify" or (self._count is not None and self._count[1]):
                    raise
                open_scopes = {"verify"}
        return Principal("open", frozenset(open_scopes), None)

    def reads_store(self, given: str | None) -> bool:
        """Whether authenticate(given) would read or write the store now; where not, it decides from
        what this replica holds (a key read or counted within KEY_CACHE_S, the environment's keys) in
        microseconds, and a request need not hand it to a thread."""
        if self.supervisor is None:
            return False
        clock = time.monotonic()
        if not given:
            return not self.settings.api_keys and (self._count is None or clock - self._count[0] >= KEY_CACHE_S)
        if environment_principal(given, self.settings.api_keys, self.settings.write_api_keys) is not None:
            return False
        key_id = key_id_of(given)
        if key_id is None:
            return False
        held = self._records.get(key_id)
        if held is None or clock - held[0] >= KEY_CACHE_S:
            return True
        return held[1] is not None and now() - self._touched.get(key_id, 0.0) >= TOUCH_EVERY_S

    def _stored(self, key_id: str, given: str) -> Principal | None:
        record = self._record(key_id)
        at = now()
        if record is None or not hash_matches(given, record.secret_hash) or not record.active(at):
            return None
        if at - self._touched.get(key_id, 0.0) >= TOUCH_EVERY_S:
            self._touched[key_id] = at
            self.supervisor.get().touch_key(key_id, at)
        return Principal(record.id, frozenset(record.scopes), record.galleries,
                         record.rate_per_s or self.settings.key_rate_per_s, record.burst or self.settings.key_burst)

    def forget(self, key_id: str) -> None:
        """Drop what this replica holds of a key (it was revoked here): refused from the next request."""
        with self._lock:
            self._records.pop(key_id, None)
        self._count = None

    def _record(self, key_id: str) -> KeyRecord | None:
        clock = time.monotonic()
        held = self._records.get(key_id)
        if held is None or clock - held[0] >= KEY_CACHE_S:
            held = (clock, self.supervisor.get().get_key(key_id))
            with self._lock:
                if len(self._records) > 100_000:  # ids that were guessed, not keys: forget them all
                    self._records.clear()
                self._records[key_id] = held
        return held[1]

    def _stored_keys(self) -> int:
        clock = time.monotonic()
        if self._count is None or clock - self._count[0] >= KEY_CACHE_S:
            self._count = (clock, self.supervisor.get().key_count())
        return self._count[1]


@dataclass(frozen=True)
class NewKey:
    """A key as created: its record, and its secret, shown this once."""

    record: KeyRecord
    secret: str


@dataclass(frozen=True)
class KeyService:
    storage: Storage
    ring: KeyRing

    async def create(self, principal: Principal, name: str, scopes: Sequence[str], galleries: Sequence[str] | None,
                     expires_at: float | None, rate_per_s: float | None, burst: int | None) -> NewKey:
        created = await run_in_threadpool(create_key, self.storage, name, scopes, galleries, expires_at, rate_per_s,
                                          burst, principal)
        self.ring.forget(created.record.id)  # the service leaves open mode at once
        return created

    async def list(self, after: str | None, limit: int) -> Page:
        return await run_in_threadpool(self.storage.list_keys, after, limit)

    async def revoke(self, principal: Principal, key_id: str) -> KeyRecord:
        revoked = await run_in_threadpool(revoke_key, self.storage, key_id, principal)
        self.ring.forget(key_id)
        return revoked

    async def audit(self, query: AuditQuery, limit: int) -> list[AuditEntry]:
        return await run_in_threadpool(self.storage.audit_entries, query, limit)


def create_key(storage: Storage, name: str, scopes: Sequence[str], galleries: Sequence[str] | None,
               expires_at: float | None, rate_per_s: float | None, burst: int | None,
               principal: Principal) -> NewKey:
    """A new stored key (the HTTP route's and the CLI's one way): only its secret's hash is kept."""
    key_id, secret = make_secret()
    record = KeyRecord(key_id, name, secret_hash(secret), tuple(dict.fromkeys(scopes)),
                       None if galleries is None else tuple(dict.fromkeys(galleries)), now(), expires_at,
                       rate_per_s=rate_per_s, burst=burst)
    storage.create_key(record, audit_event(principal, "key.create", None, None, 201))
    return NewKey(record, secret)


def revoke_key(storage: Storage, key_id: str, principal: Principal) -> KeyRecord:
    return storage.revoke_key(key_id, audit_event(principal, "key.revoke", None, None, 200))
