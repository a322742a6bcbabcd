"""When the key ring decides from memory, on the event loop, and when it must read the store (on a
thread): a real SQLite store on disk, its schema migrated as the service migrates it."""

from __future__ import annotations

import pytest

import app.services.keys as keys
from app.security import Principal
from app.services.keys import KeyRing, create_key
from app.settings import Settings
from app.storage import open_storage
from app.storage.supervisor import StorageSupervisor

ADMIN = Principal("env-write", frozenset({"admin"}), None)


@pytest.fixture
def ring(tmp_path) -> KeyRing:
    storage = open_storage(f"sqlite:///{tmp_path / 'facever.sqlite3'}")
    storage.migrate()
    supervisor = StorageSupervisor(storage)
    supervisor.salt = storage.upload_salt()
    return KeyRing(Settings(api_keys=(), write_api_keys=()), supervisor)


def test_a_stored_key_is_read_once_then_decided_from_memory_until_its_cache_lapses(ring, monkeypatch):
    secret = create_key(ring.supervisor.get(), "door", ["verify"], None, None, None, None, ADMIN).secret
    clock = [1000.0]
    monkeypatch.setattr(keys.time, "monotonic", lambda: clock[0])
    assert ring.reads_store(secret)  # never read here
    assert ring.authenticate(secret, "verify").scopes == {"verify"}
    assert not ring.reads_store(secret) and not ring.reads_store(secret[:-1] + "x")  # same id: held
    clock[0] += keys.KEY_CACHE_S
    assert ring.reads_store(secret)  # a revocation elsewhere must be seen within KEY_CACHE_S


def test_an_open_service_counts_its_keys_in_the_store_no_more_often_than_the_cache_allows(ring, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(keys.time, "monotonic", lambda: clock[0])
    assert ring.reads_store(None)
    assert ring.authenticate(None, "verify").key_id == "open"
    assert not ring.reads_store(None) and not ring.reads_store("not-a-key")
    clock[0] += keys.KEY_CACHE_S
    assert ring.reads_store(None)


def test_without_storage_nothing_is_read():
    assert not KeyRing(Settings(api_keys=("k",)), None).reads_store("k")
