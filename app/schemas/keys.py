"""Request and response shapes of the API keys and the audit trail (admin routes)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.schemas.galleries import timestamp
from app.security import GALLERY_PATTERN, SCOPES
from app.storage.audit import ACTIONS, AuditEntry
from app.storage.base import KeyRecord

Scope = str


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="what the key is for, shown in listings")
    scopes: list[Scope] = Field(min_length=1, description=f"any of {', '.join(SCOPES)}")
    galleries: list[str] | None = Field(
        None, max_length=1000, description="the galleries the key reaches: exact ids, and prefixes ending in '*' "
        "(acme-*); null: every gallery",
    )
    expires_at: dt.datetime | None = Field(None, description="when the key stops working (ISO 8601); null: never")
    rate_per_s: float | None = Field(None, gt=0, le=100_000, description="its rate limit; null: the service's")
    burst: int | None = Field(None, ge=1, le=1_000_000, description="its burst; null: the service's")

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scope {unknown[0]!r}; scopes: {', '.join(SCOPES)}")
        return scopes

    @field_validator("galleries")
    @classmethod
    def _gallery_patterns(cls, galleries: list[str] | None) -> list[str] | None:
        for pattern in galleries or ():
            if not GALLERY_PATTERN.fullmatch(pattern):
                raise ValueError(f"{pattern!r} is neither a gallery id nor a prefix ending in '*'")
        return galleries

    @field_validator("expires_at")
    @classmethod
    def _aware_and_ahead(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone (e.g. 2027-01-01T00:00:00Z)")
        if value is not None and value <= dt.datetime.now(dt.UTC):
            raise ValueError("the key would have expired already")
        return value

    @model_validator(mode="after")
    def _admin_reaches_all(self) -> CreateKey:
        if "admin" in self.scopes and self.galleries is not None:
            raise ValueError("an admin key reaches every gallery; leave galleries out")
        return self


class KeyResponse(BaseModel):
    """A key as listed: never its secret."""

    id: str = Field(description="the key's public id, as the audit trail and the metrics name it")
    name: str
    scopes: list[str]
    galleries: list[str] | None
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    rate_per_s: float | None
    burst: int | None

    @classmethod
    def of(cls, key: KeyRecord) -> KeyResponse:
        def when(seconds: float | None) -> str | None:
            return None if seconds is None else timestamp(seconds)

        return cls(id=key.id, name=key.name, scopes=list(key.scopes),
                   galleries=None if key.galleries is None else list(key.galleries),
                   created_at=timestamp(key.created_at), expires_at=when(key.expires_at),
                   last_used_at=when(key.last_used_at), revoked_at=when(key.revoked_at), rate_per_s=key.rate_per_s,
                   burst=key.burst)


class CreatedKey(KeyResponse):
    key: str = Field(description="the secret, for the X-API-Key header: shown this once, never stored")


class KeyList(BaseModel):
    keys: list[KeyResponse]
    next_cursor: str | None


class AuditEntryResponse(BaseModel):
    seq: int
    at: str
    key_id: str
    action: str = Field(description=f"one of {', '.join(ACTIONS)}")
    gallery: str | None
    subject: str | None
    status: int = Field(description="the HTTP status the request was answered with")
    matched: bool | None = Field(description="a decision's outcome (subject verification, search); null for a write")
    request_id: str
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryResponse:
        return cls(seq=entry.seq, at=timestamp(entry.at), key_id=entry.key_id, action=entry.action,
                   gallery=entry.gallery_id, subject=entry.subject_id, status=entry.status, matched=entry.matched,
                   request_id=entry.request_id, prev_hash=entry.prev_hash, hash=entry.hash)


class AuditPage(BaseModel):
    entries: list[AuditEntryResponse]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")
