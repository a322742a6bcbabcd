"""Templates at rest: keys as FACEVER_TEMPLATE_KEYS gives them, and AES-256-GCM bound to a row."""

from __future__ import annotations

import base64

import pytest

from app.storage.crypto import BrokenSeal, TemplateCipher, new_key_text, parse_keys, template_binding

KEY = base64.b64encode(bytes(range(32))).decode()


def test_keys_are_read_in_order_and_the_first_seals():
    keys = parse_keys(f"new:{KEY}, old:{base64.b64encode(b'x' * 32).decode()}\n")
    assert list(keys) == ["new", "old"] and keys["new"] == bytes(range(32))
    assert TemplateCipher(keys).current == "new"
    assert list(parse_keys(new_key_text("k9"))) == ["k9"]


@pytest.mark.parametrize(("text", "message"), [
    ("nokey", "id:base64"), (f"bad id:{KEY}", "id:base64"), ("k:!!!", "not base64"),
    (f"k:{base64.b64encode(b'short').decode()}", "32"), (f"k:{KEY},k:{KEY}", "twice"),
])
def test_malformed_keys_are_refused_without_echoing_them(text, message):
    with pytest.raises(ValueError, match=message) as refused:
        parse_keys(text)
    assert KEY not in str(refused.value)


def test_a_blob_opens_only_in_its_own_row():
    cipher = TemplateCipher(parse_keys(f"k1:{KEY}"))
    here = template_binding("g", "alice", "t1", ("enc", "1", "plain", "int8"), 2)
    key_id, blob = cipher.seal(b"\x00\x00\x80?\x00\x00\x00\x00", here)
    assert key_id == "k1" and len(blob) == 12 + 8 + 16 and b"\x80?" not in blob[12:]
    assert cipher.open("k1", blob, here) == b"\x00\x00\x80?\x00\x00\x00\x00"
    assert cipher.seal(b"same", here)[1] != cipher.seal(b"same", here)[1]  # a fresh nonce each time
    elsewhere = template_binding("g", "bob", "t1", ("enc", "1", "plain", "int8"), 2)
    with pytest.raises(BrokenSeal):
        cipher.open("k1", blob, elsewhere)
    flipped = blob[:20] + bytes([blob[20] ^ 1]) + blob[21:]
    with pytest.raises(BrokenSeal):
        cipher.open("k1", flipped, here)
