"""API keys (admin): create (the secret shown once), list (never a secret), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.api.deps import AdminKey, KeysDep
from app.errors import invalid_request
from app.schemas.galleries import after_cursor, cursor_of
from app.schemas.keys import CreatedKey, CreateKey, KeyList, KeyResponse

router = APIRouter(prefix="/keys", tags=["keys"])

KeyId = Annotated[str, Path(pattern="^[0-9a-f]{12}$", description="a key's public id")]


@router.post("", status_code=201, response_model=CreatedKey)
async def create_key(principal: AdminKey, body: CreateKey, keys: KeysDep) -> CreatedKey:
    """A new key, with the scopes and galleries given. Its secret is in this answer only: the store
    keeps its hash, so a lost secret means a new key."""
    created = await keys.create(principal, body.name, body.scopes, body.galleries,
                                body.expires_at.timestamp() if body.expires_at else None, body.rate_per_s, body.burst)
    return CreatedKey(**KeyResponse.of(created.record).model_dump(), key=created.secret)


@router.get("", response_model=KeyList)
async def list_keys(principal: AdminKey, keys: KeysDep,
                    cursor: Annotated[str | None, Query(max_length=256)] = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> KeyList:
    """Every key, revoked and expired ones too, in id order; never a secret."""
    try:
        after = after_cursor(cursor)
    except ValueError as error:
        raise invalid_request(str(error)) from None
    page = await keys.list(after, limit)
    return KeyList(keys=[KeyResponse.of(key) for key in page.items], next_cursor=cursor_of(page))


@router.delete("/{key_id}", response_model=KeyResponse)
async def revoke_key(principal: AdminKey, key_id: KeyId, keys: KeysDep) -> KeyResponse:
    """Revoked at once on this replica, and on every replica sharing the database within 0.5 s (KEY_CACHE_S)."""
    return KeyResponse.of(await keys.revoke(principal, key_id))
