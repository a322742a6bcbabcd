"""API keys: their secrets and hashes, what a key may do (scopes) and reach (galleries), and the
brakes on how fast a key may call and a client may guess.

A stored key's secret is `fvk_<id>_<random>`: the prefix lets secret scanners recognise a leaked
one, the public id finds its record, and 256 random bits make the secret unguessable, so one
SHA-256 of it is what the store keeps (as GitHub's and Immich's tokens are kept): the secret is
shown once, at creation, and never again.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

SCOPES = ("verify", "read", "enrol", "delete", "admin")
# verify: /verify and /embed (nothing stored); read: galleries, subjects, subject verification and
# search; enrol: create galleries within reach, subjects, faces, import; delete: templates, subjects,
# galleries; admin: keys, the audit trail, and everything else, in every gallery.
KEY_PREFIX = "fvk_"
_KEY_PATTERN = re.compile(r"fvk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
# A gallery pattern: an exact id, or a prefix ending in '*' ("acme-*").
GALLERY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\*?|\*")


def make_secret() -> tuple[str, str]:
    """A new key's public id and its secret."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def secret_hash(secret: str) -> str:
    """What the store keeps of a secret: its SHA-256 (the secret is random, so no salt or stretching
    is needed: there is nothing to guess from it)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_of(secret: str) -> str | None:
    """The public id of a well-formed stored-key secret; None for anything else."""
    match = _KEY_PATTERN.fullmatch(secret)
    return match.group(1) if match else None


def hash_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(secret), stored_hash)


def env_key_matches(given: str, keys: Iterable[str]) -> bool:
    """Compare against every key in constant time, so neither timing nor position reveals a key."""
    given_bytes = given.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given_bytes, key.encode())
    return matched


def in_reach(gallery_id: str, patterns: Iterable[str]) -> bool:
    """Whether a gallery id is one of `patterns`: exact ids, prefixes ending in '*', or '*' (all)."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if gallery_id.startswith(pattern[:-1]):
                return True
        elif gallery_id == pattern:
            return True
    return False


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a stored key (`key_id` its public id), a key from the environment
    (`env`), or anyone where no key is configured (`open`). `galleries` None: every gallery."""

    key_id: str
    scopes: frozenset[str]
    galleries: tuple[str, ...] | None
    rate_per_s: float | None = None  # None: not limited (the environment's keys, the open service)
    burst: int = 1

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def reaches(self, gallery_id: str) -> bool:
        return self.galleries is None or "admin" in self.scopes or in_reach(gallery_id, self.galleries)

    @property
    def reach(self) -> tuple[str, ...] | None:
        """The gallery patterns a listing is limited to; None: every gallery."""
        return None if self.galleries is None or "admin" in self.scopes else self.galleries


def environment_principal(given: str, api_keys: tuple[str, ...], write_keys: tuple[str, ...]) -> Principal | None:
    """A key from FACEVER_API_KEYS / FACEVER_WRITE_API_KEYS, the single-tenant and bootstrap mode.
    Write keys may do everything, admin included (they create the first stored keys); plain keys
    may verify and read, and enrol and delete too where no write keys are set, as before stored
    keys existed; with no write keys, they are admins."""
    if write_keys and env_key_matches(given, write_keys):
        return Principal("env-write", frozenset(SCOPES), None)
    if api_keys and env_key_matches(given, api_keys):
        scopes = {"verify", "read"} if write_keys else set(SCOPES)
        return Principal("env", frozenset(scopes), None)
    return None


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per key, in this process: `rate` requests a second on average, `burst` at once.
    `admit` answers 0 to let a request through, or the seconds until it would be."""

    def __init__(self, clock=time.monotonic):
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def admit(self, key_id: str, rate: float, burst: int) -> float:
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = _Bucket(float(burst), now)
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate


# Addresses whose failures are held before those outside the window are dropped: a bound on memory.
MAX_TRACKED_ADDRESSES = 100_000


@dataclass
class FailedAuthentications:
    """Failed authentications per client address in a sliding window, so keys cannot be guessed
    online: past `limit` in `window_s`, an address is refused before any key is checked."""

    limit: int
    window_s: float
    clock: object = time.monotonic
    _failures: dict[str, deque] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, address: str) -> float:
        """0 where the address may try; else the seconds until its oldest failure leaves the window."""
        now = self.clock()
        with self._lock:
            failures = self._failures.get(address)
            if not failures:
                return 0.0
            while failures and failures[0] <= now - self.window_s:
                failures.popleft()
            if not failures:
                del self._failures[address]
                return 0.0
            return failures[0] + self.window_s - now if len(failures) >= self.limit else 0.0

    def record(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) >= MAX_TRACKED_ADDRESSES:  # many addresses failing at once: keep the recent
                for stale in [a for a, times in self._failures.items() if times[-1] <= now - self.window_s]:
                    del self._failures[stale]
            self._failures.setdefault(address, deque(maxlen=self.limit)).append(now)


def retry_after_header(seconds: float) -> dict[str, str]:
    """Retry-After in whole seconds, at least 1."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
