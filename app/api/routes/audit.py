"""The audit trail (admin): filtered, in cursor pages, or exported whole as JSON lines."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from app.api.deps import AdminKey, KeysDep
from app.errors import invalid_request
from app.schemas.keys import AuditEntryResponse, AuditPage
from app.storage.audit import ACTIONS
from app.storage.base import AuditQuery

router = APIRouter(prefix="/audit", tags=["keys"])

EXPORT_PAGE = 1000


def audit_query(
    gallery: Annotated[str | None, Query(max_length=128)] = None,
    subject: Annotated[str | None, Query(max_length=128)] = None,
    key: Annotated[str | None, Query(max_length=64, description="a key's public id")] = None,
    action: Annotated[str | None, Query(description=f"one of {', '.join(ACTIONS)}")] = None,
    since: Annotated[dt.datetime | None, Query(description="entries at or after this time (ISO 8601)")] = None,
    until: Annotated[dt.datetime | None, Query(description="entries before this time (ISO 8601)")] = None,
    cursor: Annotated[str | None, Query(pattern="^[0-9]{1,18}$", description="next_cursor of the previous page")] = None,
) -> AuditQuery:
    """The filter the query string gives; every parameter is optional."""
    if action is not None and action not in ACTIONS:
        raise invalid_request(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
    if (since and since.tzinfo is None) or (until and until.tzinfo is None):
        raise invalid_request("give since and until with a time zone (e.g. 2027-01-01T00:00:00Z)")
    return AuditQuery(gallery, subject, key, action, since.timestamp() if since else None,
                      until.timestamp() if until else None, int(cursor or 0))


AuditFilter = Annotated[AuditQuery, Depends(audit_query)]


@router.get("", response_model=AuditPage)
async def audit(principal: AdminKey, keys: KeysDep, query: AuditFilter,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AuditPage:
    """The entries that match, oldest first: who (key id) did what (action) to which gallery and
    subject, with what outcome, in which request. Never an image, an embedding or a score."""
    entries = await keys.audit(query, limit + 1)
    more = len(entries) > limit
    return AuditPage(entries=[AuditEntryResponse.of(entry) for entry in entries[:limit]],
                     next_cursor=str(entries[limit - 1].seq) if more else None)


@router.get("/export", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}, "description": "one entry per line"}})
async def export(principal: AdminKey, keys: KeysDep, query: AuditFilter) -> StreamingResponse:
    """Every matching entry as a JSON line, as stored (times in seconds since the epoch, the hashes
    of the chain), so an export can be checked against its chain away from the service."""

    async def lines() -> AsyncIterator[bytes]:
        after = query.after
        while entries := await keys.audit(replace(query, after=after), EXPORT_PAGE):
            yield "".join(json.dumps(entry.to_json()) + "\n" for entry in entries).encode()
            after = entries[-1].seq

    return StreamingResponse(lines(), media_type="application/x-ndjson")
