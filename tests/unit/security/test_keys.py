"""Keys, scopes and reach, and the two brakes (per-key rate, failed authentications per address),
on hand-made values and an injected clock."""

from __future__ import annotations

import hashlib

import pytest

from app.security import (
    SCOPES,
    FailedAuthentications,
    Principal,
    RateLimiter,
    environment_principal,
    hash_matches,
    in_reach,
    key_id_of,
    make_secret,
    secret_hash,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_secret_names_its_key_and_only_its_hash_is_kept():
    key_id, secret = make_secret()
    assert secret.startswith(f"fvk_{key_id}_") and len(key_id) == 12 and len(secret) == 4 + 12 + 1 + 43
    assert key_id_of(secret) == key_id
    assert secret_hash(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert hash_matches(secret, secret_hash(secret)) and not hash_matches(secret + "x", secret_hash(secret))
    assert make_secret()[1] != secret


@pytest.mark.parametrize("text", ["", "fvk_", "fvk_0123456789ab", "fvk_0123456789AB_" + "a" * 43,
                                  "fvk_0123456789ab_" + "a" * 42, "xyz_0123456789ab_" + "a" * 43, "a key"])
def test_what_is_not_a_stored_key_names_none(text):
    assert key_id_of(text) is None


def test_reach_is_exact_ids_and_prefixes():
    patterns = ("acme-*", "shared")
    assert in_reach("acme-1", patterns) and in_reach("acme-", patterns) and in_reach("shared", patterns)
    assert not in_reach("acme", patterns) and not in_reach("shared-2", patterns) and not in_reach("other", patterns)
    assert in_reach("anything", ("*",))


def test_admin_has_every_scope_and_reaches_every_gallery():
    tenant = Principal("k1", frozenset({"read", "enrol"}), ("acme-*",))
    assert tenant.allows("read") and not tenant.allows("delete") and not tenant.allows("admin")
    assert tenant.reaches("acme-x") and not tenant.reaches("other") and tenant.reach == ("acme-*",)
    admin = Principal("k2", frozenset({"admin"}), ("acme-*",))
    assert all(admin.allows(scope) for scope in SCOPES) and admin.reaches("other") and admin.reach is None


def test_environment_keys_read_write_and_administer_as_before():
    assert environment_principal("w", ("r",), ("w",)).scopes == frozenset(SCOPES)
    assert environment_principal("r", ("r",), ("w",)).scopes == {"verify", "read"}
    assert environment_principal("r", ("r",), ()).scopes == frozenset(SCOPES)  # no write keys: any key may write
    assert environment_principal("x", ("r",), ("w",)) is None


def test_a_bucket_admits_its_burst_then_its_rate():
    clock = Clock()
    limiter = RateLimiter(clock)
    assert [limiter.admit("k", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.admit("k", 2.0, 3) == pytest.approx(0.5)  # one token takes 1/rate
    assert limiter.admit("other", 2.0, 3) == 0.0  # keys do not share a bucket
    clock.now += 0.5
    assert limiter.admit("k", 2.0, 3) == 0.0 and limiter.admit("k", 2.0, 3) == pytest.approx(0.5)
    clock.now += 100
    assert [limiter.admit("k", 2.0, 3) for _ in range(4)][-1] > 0  # refilled to the burst, not beyond


def test_an_address_is_refused_after_its_failures_until_the_oldest_leaves_the_window():
    clock = Clock()
    failures = FailedAuthentications(limit=3, window_s=60.0, clock=clock)
    for _ in range(2):
        failures.record("10.0.0.1")
        clock.now += 1
    assert failures.retry_after("10.0.0.1") == 0.0
    failures.record("10.0.0.1")
    assert failures.retry_after("10.0.0.1") == pytest.approx(58.0)  # the first failure was at 100, now is 102
    assert failures.retry_after("10.0.0.2") == 0.0
    clock.now = 160.0
    assert failures.retry_after("10.0.0.1") == 0.0


def test_the_addresses_held_are_bounded(monkeypatch):
    monkeypatch.setattr("app.security.MAX_TRACKED_ADDRESSES", 3)
    clock = Clock()
    failures = FailedAuthentications(limit=2, window_s=10.0, clock=clock)
    for address in ("a", "b", "c"):
        failures.record(address)
    clock.now += 11  # all three out of the window
    failures.record("d")
    assert set(failures._failures) == {"d"}
    for _ in range(5):
        failures.record("d")
    assert len(failures._failures["d"]) == 2  # no more than the limit per address
