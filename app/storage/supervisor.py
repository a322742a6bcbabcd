"""The app's hold on its store: schema made ready in the background, health watched, never a blocker.

The service starts whether or not the database answers (/verify and /embed need none). A background
task migrates the schema as soon as the database can be reached, then pings it, so /health/ready can
report it without a round trip. Until the first migration succeeds the subject routes answer
storage_unavailable; after it each request goes to the database itself (the pool reconnects), so a
database that comes back serves the next request, not the next ping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from app.logging import get_logger
from app.storage.base import MissingTemplateKey, SchemaTooNew, Storage, StorageError, StorageUnavailable

logger = get_logger("storage")

RETRY_S = 2.0  # between attempts while the database is unreachable
CHECK_S = 5.0  # between pings while it answers
PRUNE_EVERY_S = 3600.0  # between prunings of the audit trail, where it has a retention
SWEEP_EVERY_S = 60.0  # between sweeps of the subjects past their gallery's retention

StorageStatus = Literal["starting", "ok", "unavailable"]


class StorageSupervisor:
    def __init__(self, storage: Storage, audit_retention_days: float | None = None):
        self.storage = storage
        self.audit_retention_days = audit_retention_days
        self.status: StorageStatus = "starting"
        self.error: str | None = None
        self.salt: bytes | None = None  # known once migrated
        self._pruned_at = float("-inf")
        self._swept_at = float("-inf")

    def get(self) -> Storage:
        """The store, once its schema is ready; StorageUnavailable before that."""
        if self.salt is None:
            raise StorageUnavailable(self.error or "the database is being prepared; retry shortly")
        return self.storage

    async def watch(self) -> None:
        while True:
            try:
                if self.salt is None:
                    await asyncio.to_thread(self.storage.migrate)
                    self.salt = await asyncio.to_thread(self.storage.upload_salt)
                else:
                    await asyncio.to_thread(self.storage.ping)
                self._set("ok", None)
                await self._prune_audit()
                await self._sweep_expired()
            except (SchemaTooNew, MissingTemplateKey) as error:
                self._set("unavailable", error.message)
            except StorageError as error:
                self._set("unavailable", f"the database is unreachable: {error.message}")
            await asyncio.sleep(CHECK_S if self.status == "ok" else RETRY_S)

    async def _sweep_expired(self) -> None:
        """Subjects past their gallery's retention deleted, each with its audit entry, at most once
        every SWEEP_EVERY_S (and one replica at a time, through the database)."""
        if time.monotonic() - self._swept_at < SWEEP_EVERY_S:
            return
        self._swept_at = time.monotonic()
        while expired := await asyncio.to_thread(self.storage.sweep_expired, time.time()):
            logger.info("retention: %d subjects deleted", len(expired))

    async def _prune_audit(self) -> None:
        """Entries past the audit retention deleted, at most once every PRUNE_EVERY_S."""
        if self.audit_retention_days is None or time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = time.monotonic()
        removed = await asyncio.to_thread(self.storage.prune_audit, time.time() - self.audit_retention_days * 86400)
        if removed:
            logger.info("audit trail: %d entries older than %g days deleted", removed, self.audit_retention_days)

    def _set(self, status: StorageStatus, error: str | None) -> None:
        if status != self.status:
            log = logger.info if status == "ok" else logger.error
            log("storage %s: %s", status, error or f"{self.storage.url_scheme} ready")
        self.status, self.error = status, error

    async def close(self) -> None:
        await asyncio.to_thread(self.storage.close)
