"""Templates encrypted at rest: AES-256-GCM (PyCA's `cryptography`), keys by id, for rotation.

A face can be rebuilt from its embedding (NbNet and later attacks), so a stored template is
biometric data and a stolen backup must not be a face database. Each stored embedding is sealed
with a fresh 96-bit nonce under the first configured key; the row records the key's id, so older
keys keep opening older rows while `facever templates rotate` moves them on. The associated data
binds a blob to its row (gallery, subject, template id) and to the model that made it, so a blob
copied into another row, or a flipped byte, does not decrypt: it is refused as corrupted.

Keys come from FACEVER_TEMPLATE_KEYS (`id:base64,id:base64`, the first encrypts) or the file
FACEVER_TEMPLATE_KEYS_FILE names (a mounted secret, the same text); 32 bytes each.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class BrokenSeal(Exception):
    """A stored blob that does not decrypt under its key and row: moved, edited or damaged."""


def parse_keys(text: str) -> dict[str, bytes]:
    """`id:base64` items, comma- or newline-separated, in order (the first encrypts); ValueError
    for a malformed item, a key that is not 32 bytes, or an id given twice. Never echoes a key."""
    keys: dict[str, bytes] = {}
    for item in (part.strip() for part in re.split(r"[,\n]", text)):
        if not item:
            continue
        key_id, separator, encoded = item.partition(":")
        if not separator or not KEY_ID.fullmatch(key_id):
            raise ValueError("template keys are id:base64 items (ids of letters, digits, '.', '_', '-')")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"template key {key_id!r} is not base64") from None
        if len(key) != 32:
            raise ValueError(f"template key {key_id!r} is {len(key)} bytes; AES-256 needs 32")
        if key_id in keys:
            raise ValueError(f"template key {key_id!r} is given twice")
        keys[key_id] = key
    return keys


def new_key_text(key_id: str) -> str:
    """A fresh key as FACEVER_TEMPLATE_KEYS takes it."""
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


class TemplateCipher:
    """Seals and opens stored embeddings with the configured keys; the first one seals."""

    def __init__(self, keys: Mapping[str, bytes]):
        if not keys:
            raise ValueError("a template cipher needs at least one key")
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = next(iter(keys))

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._aead)

    def seal(self, plaintext: bytes, binding: bytes, key_id: str | None = None) -> tuple[str, bytes]:
        """The key id used and nonce + ciphertext + tag, bound to `binding` (its row and model)."""
        key_id = key_id or self.current
        nonce = os.urandom(NONCE_BYTES)
        return key_id, nonce + self._aead[key_id].encrypt(nonce, plaintext, binding)

    def open(self, key_id: str, blob: bytes, binding: bytes) -> bytes:
        try:
            return self._aead[key_id].decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], binding)
        except InvalidTag:
            raise BrokenSeal("the blob does not decrypt under its key for its row") from None


def template_binding(gallery_id: str, subject_id: str, template_id: str, model: tuple[str, ...], dim: int) -> bytes:
    """The associated data of a template's blob: where it is, and what made it."""
    return "\x00".join((gallery_id, subject_id, template_id, *model, str(dim))).encode()
