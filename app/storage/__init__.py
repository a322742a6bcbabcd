"""Where enrolled subjects live, behind one contract (app.storage.base), chosen by one URL:

    sqlite:///relative/path.sqlite3, sqlite:////absolute/path.sqlite3   the embedded default
    postgresql://user:password@host:5432/database                       several replicas, one gallery
    off                                                                 no subjects: the routes are not served
"""

from __future__ import annotations

from app.storage.base import Storage
from app.storage.crypto import TemplateCipher


def open_storage(url: str, cipher: TemplateCipher | None = None) -> Storage:
    """The store a URL names, sealing templates with `cipher` where one is given; opening connects
    to nothing yet (migrate() does), so an unreachable database never stops the service from starting."""
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite" and rest.startswith("/") and len(rest) > 1:
        from app.storage.sqlite import SQLiteStorage

        storage = SQLiteStorage(rest[1:])
    elif scheme in ("postgresql", "postgres"):
        from app.storage.postgres import PostgresStorage  # psycopg loads only where it is used

        storage = PostgresStorage(url)
    else:
        raise ValueError(f"storage URL must be sqlite:///<path> or postgresql://...; got {redacted(url)!r}")
    storage.cipher = cipher
    return storage


def redacted(url: str) -> str:
    """The URL without its password, for logs and errors."""
    scheme, separator, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{separator}{credentials.split(':', 1)[0]}:***@{location}"
