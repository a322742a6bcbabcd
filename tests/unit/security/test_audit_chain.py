"""The audit trail's hash chain: each entry's hash over its fields and the one before, and a walk that
names the first entry edited, deleted, inserted or cut off."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from app.storage.audit import GENESIS, AuditEntry, AuditEvent, entry_hash, verify_chain


def chain(count: int, anchor: str = GENESIS) -> list[AuditEntry]:
    entries, previous = [], anchor
    for seq in range(1, count + 1):
        event = AuditEvent(f"key{seq}", "subject.enrol", "g", f"s{seq}", 201, f"r{seq}")
        at = 1000.0 + seq
        digest = entry_hash(event, at, previous)
        entries.append(AuditEntry(**vars(event), seq=seq, at=at, prev_hash=previous, hash=digest))
        previous = digest
    return entries


def test_an_entry_hash_is_the_sha256_of_its_canonical_text():
    event = AuditEvent("k", "gallery.search", "g", None, 200, "req", matched=True)
    text = ('{"action":"gallery.search","at":"5.5","gallery_id":"g","key_id":"k","matched":true,'
            f'"prev_hash":"{GENESIS}","request_id":"req","status":200,"subject_id":null}}')
    assert json.loads(text)  # well-formed, and what the hash is of
    assert entry_hash(event, 5.5, GENESIS) == hashlib.sha256(text.encode()).hexdigest()


def test_an_intact_chain_is_checked_to_its_head():
    entries = chain(5)
    report = verify_chain(entries, GENESIS, (5, entries[-1].hash))
    assert report.intact and report.checked == 5
    assert verify_chain([], GENESIS, None).intact


@pytest.mark.parametrize("case", ["edited", "deleted", "inserted", "cut", "anchor"])
def test_the_first_broken_entry_is_named(case):
    entries = chain(5)
    head = (5, entries[-1].hash)
    if case == "edited":
        entries[2] = replace(entries[2], subject_id="mallory")
        expected = 3
    elif case == "deleted":
        del entries[2]
        expected = 4
    elif case == "inserted":
        entries.insert(2, replace(entries[2], seq=99))
        expected = 3
    elif case == "cut":
        entries = entries[:-1]
        expected = 5
    else:  # the oldest entries deleted without moving the anchor on, as pruning does
        entries = entries[2:]
        expected = 3
    report = verify_chain(entries, GENESIS, head)
    assert not report.intact and report.broken_at == expected, report


def test_a_pruned_chain_starts_from_its_anchor():
    entries = chain(5)
    assert verify_chain(entries[2:], entries[1].hash, (5, entries[-1].hash)).intact


def test_unknown_actions_are_refused():
    with pytest.raises(ValueError, match="unknown audit action"):
        AuditEvent("k", "gallery.rename", "g", None, 200, "r")
