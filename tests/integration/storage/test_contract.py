"""The storage contract (app.storage.base), one suite for both back-ends: SQLite files on disk and a
real PostgreSQL server on loopback (tests/support/postgres.py)."""

from __future__ import annotations

import base64
import sqlite3
import threading
import time

import numpy as np
import pytest

from app.storage import open_storage, redacted
from app.storage.audit import AuditEvent, verify_chain
from app.storage.base import (
    DAY_S,
    SCHEMA_VERSION,
    AuditQuery,
    Conflict,
    ConsentRequired,
    CorruptTemplate,
    Deleted,
    Job,
    KeyRecord,
    MissingTemplateKey,
    NewTemplate,
    NotFound,
    PossibleDuplicate,
    Retention,
    SchemaTooNew,
    StorageUnavailable,
    check_id,
)
from app.storage.crypto import TemplateCipher, parse_keys
from app.storage.sql import CHANGES_KEPT, MIGRATIONS, SQLStorage
from model.types import EmbeddingModel

MODEL = EmbeddingModel("enc", "1.0", "plain", "int8")
OTHER = EmbeddingModel("enc", "2.0", "plain", "int8")


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, np.float32)
    return vector / np.linalg.norm(vector)


def template(*values: float, upload_hash: str | None = None) -> NewTemplate:
    return NewTemplate(unit(*values), MODEL, box=(1.0, 2.0, 30.0, 40.0), landmarks=((5.0, 6.0),) * 5,
                       detection_score=0.9, upload_hash=upload_hash)


def accept(stored) -> None:
    pass


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path) -> SQLStorage:
    url = f"sqlite:///{tmp_path}/facever.sqlite3" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    storage = open_storage(url)
    storage.migrate()
    yield storage
    storage.close()


def test_enrol_read_back_and_delete_for_real(store: SQLStorage) -> None:
    store.create_gallery("staff")
    store.create_subject("staff", "alice")
    added = store.add_templates("staff", "alice", [template(1, 0, 0, 0, upload_hash="a"), template(0, 1, 0, 0)],
                                accept, max_templates=10)
    subject = store.get_subject("staff", "alice")
    assert subject.template_count == 2 and [t.id for t in subject.templates] == [t.id for t in added]
    first = subject.templates[0]
    np.testing.assert_array_equal(first.embedding, unit(1, 0, 0, 0))
    assert first.model == MODEL and first.box == (1.0, 2.0, 30.0, 40.0) and first.detection_score == 0.9
    assert first.landmarks == ((5.0, 6.0),) * 5 and first.upload_hash == "a"
    gallery = store.get_gallery("staff")
    assert (gallery.subject_count, gallery.template_count) == (1, 2)

    assert store.delete_template("staff", "alice", added[0].id) == Deleted(templates=1)
    assert store.get_subject("staff", "alice").template_count == 1
    assert store.delete_subject("staff", "alice") == Deleted(subjects=1, templates=1)
    with pytest.raises(NotFound) as missing:
        store.get_subject("staff", "alice")
    assert missing.value.code == "subject_not_found"


def test_delete_gallery_counts_everything_below(store: SQLStorage) -> None:
    store.create_gallery("g")
    for name in ("a", "b"):
        store.create_subject("g", name)
        store.add_templates("g", name, [template(1, 2, 3, 4)], accept, 10)
    assert store.delete_gallery("g") == Deleted(galleries=1, subjects=2, templates=2)
    with pytest.raises(NotFound) as missing:
        store.list_subjects("g", None, 10)
    assert missing.value.code == "gallery_not_found"
    store.create_gallery("g")  # the name is free again, and empty
    assert store.get_gallery("g").template_count == 0


def test_not_found_and_conflicts_have_their_codes(store: SQLStorage) -> None:
    codes = []
    for call in (lambda: store.get_gallery("nope"), lambda: store.create_subject("nope", "a"),
                 lambda: store.delete_gallery("nope")):
        with pytest.raises(NotFound) as error:
            call()
        codes.append(error.value.code)
    store.create_gallery("g")
    with pytest.raises(NotFound) as error:
        store.add_templates("g", "ghost", [template(1, 0)], accept, 10)
    codes.append(error.value.code)
    store.create_subject("g", "a")
    with pytest.raises(NotFound) as error:
        store.delete_template("g", "a", "0" * 32)
    codes.append(error.value.code)
    assert codes == ["gallery_not_found"] * 3 + ["subject_not_found", "template_not_found"]

    conflicts = []
    for call in (lambda: store.create_gallery("g"), lambda: store.create_subject("g", "a")):
        with pytest.raises(Conflict) as error:
            call()
        conflicts.append(error.value.code)
    assert conflicts == ["gallery_exists", "subject_exists"]


def test_the_same_upload_twice_in_a_gallery_is_refused(store: SQLStorage) -> None:
    store.create_gallery("g")
    store.create_subject("g", "a")
    store.create_subject("g", "b")
    store.add_templates("g", "a", [template(1, 0, upload_hash="same")], accept, 10)
    with pytest.raises(Conflict) as error:
        store.add_templates("g", "b", [template(0, 1), template(1, 1, upload_hash="same")], accept, 10)
    assert error.value.code == "duplicate_face"
    assert store.get_subject("g", "b").template_count == 0  # all or nothing


def test_a_refusing_check_writes_nothing_and_sees_the_stored_templates(store: SQLStorage) -> None:
    store.create_gallery("g")
    store.create_subject("g", "a")
    store.add_templates("g", "a", [template(1, 0)], accept, 10)
    seen = []

    def refuse(stored) -> None:
        seen.extend(stored)
        raise Conflict("subject_mismatch", "not the same person")

    with pytest.raises(Conflict):
        store.add_templates("g", "a", [template(0, 1), template(0, 2)], refuse, 10)
    assert len(seen) == 1 and store.get_subject("g", "a").template_count == 1


def test_subject_full(store: SQLStorage) -> None:
    store.create_gallery("g")
    store.create_subject("g", "a")
    store.add_templates("g", "a", [template(1, 0), template(1, 1)], accept, 3)
    with pytest.raises(Conflict) as error:
        store.add_templates("g", "a", [template(0, 1), template(2, 1)], accept, 3)
    assert error.value.code == "subject_full"


def test_pages_in_id_order(store: SQLStorage) -> None:
    store.create_gallery("g")
    for name in ("c", "a", "e", "b", "d"):
        store.create_subject("g", name)
    seen, after = [], None
    while True:
        page = store.list_subjects("g", after, 2)
        seen += [subject.id for subject in page.items]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == ["a", "b", "c", "d", "e"]
    assert store.list_galleries(None, 10).items[0].id == "g"


def test_concurrent_enrolments_all_land(store: SQLStorage) -> None:
    """Eight writers on one subject: every acknowledged write is there, none lost to a race."""
    store.create_gallery("g")
    store.create_subject("g", "a")
    acknowledged, errors = [], []

    def writer(number: int) -> None:
        try:
            for repeat in range(5):
                added = store.add_templates("g", "a", [template(number + 1, repeat + 1)], accept, 1000)
                acknowledged.append(added[0].id)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(t.id for t in store.get_subject("g", "a").templates) == sorted(acknowledged)


def test_migrate_is_idempotent_and_refuses_a_newer_schema(store: SQLStorage) -> None:
    store.migrate()
    with store._transaction(write=True) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(SchemaTooNew, match="version 99"):
        store.migrate()


def test_a_database_of_the_first_schema_is_upgraded_in_place(tmp_path) -> None:
    """Made by the first release (schema 1: no revisions, no change log), with a subject enrolled:
    migrate() brings it to the current schema, the subject still there and searchable, and the
    writes after it logged."""
    from app.storage.search_index import SearchIndex

    path = tmp_path / "facever.sqlite3"
    with sqlite3.connect(path) as db:
        for statement in MIGRATIONS[0]:
            db.execute(statement.format(blob="BLOB", serial="INTEGER PRIMARY KEY AUTOINCREMENT"))
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version (version) VALUES (1)")
        db.execute("INSERT INTO meta (key, value) VALUES ('upload_salt', '00')")
        db.execute("INSERT INTO galleries (id, created_at) VALUES ('g', 1.0)")
        db.execute("INSERT INTO subjects (gallery_id, id, created_at, updated_at) VALUES ('g', 'a', 1.0, 1.0)")
        db.execute("INSERT INTO templates (id, gallery_id, subject_id, model_name, model_version, inference, "
                   "precision, dim, embedding, created_at) VALUES ('t', 'g', 'a', ?, ?, ?, ?, 2, ?, 1.0)",
                   (MODEL.name, MODEL.version, MODEL.inference, MODEL.precision, unit(1, 0).astype("<f4").tobytes()))
    store = open_storage(f"sqlite:///{path}")
    store.migrate()
    with store._transaction(write=False) as db:
        assert db.execute("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    index = SearchIndex()
    assert list(index.matrix(store, "g", MODEL).subjects) == ["a"]
    store.create_subject("g", "b")
    store.add_templates("g", "b", [template(0, 1)], lambda stored: None, 10)
    assert store.gallery_changes("g", MODEL, 1.0, 0).changed == ["b"]
    assert sorted(index.matrix(store, "g", MODEL).subjects) == ["a", "b"]
    store.close()


def test_sqlite_deleted_bytes_do_not_linger(tmp_path) -> None:
    path = tmp_path / "facever.sqlite3"
    store = open_storage(f"sqlite:///{path}")
    store.migrate()
    store.create_gallery("g")
    store.create_subject("g", "a")
    marker = np.full(64, 0.125, np.float32)  # unit length, and a byte pattern easy to find
    store.add_templates("g", "a", [NewTemplate(marker, MODEL)], accept, 10)
    pattern = marker.tobytes()[:32]
    store.delete_subject("g", "a")
    stored = path.read_bytes() + (path.with_name(path.name + "-wal").read_bytes()
                                  if path.with_name(path.name + "-wal").exists() else b"")
    assert pattern not in stored
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unreachable_postgres_is_unavailable_not_a_crash() -> None:
    store = open_storage("postgresql://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(StorageUnavailable):
            store.migrate()
    finally:
        store.close()


def test_ids_and_urls() -> None:
    assert check_id("subject", "alice.smith-2_x") == "alice.smith-2_x"
    for bad in ("", "-a", "a/b", "a b", "é", "a" * 129, "<script>"):
        with pytest.raises(ValueError):
            check_id("subject", bad)
    assert redacted("postgresql://u:secret@h:5432/d") == "postgresql://u:***@h:5432/d"
    with pytest.raises(ValueError, match="storage URL"):
        open_storage("mysql://x")


def test_import_and_the_gallery_revision(store: SQLStorage) -> None:
    store.create_gallery("g")
    before = store.gallery_revision("g")
    assert store.import_subjects("g", [("a", [template(1, 0), template(1, 1)]), ("b", [template(0, 1)])]) == 3
    after = store.gallery_revision("g")
    templates = store.gallery_templates("g", MODEL)
    assert after > before and templates.revision == after and templates.changed is None
    assert templates.subject_ids == ["a", "a", "b"] and templates.embeddings.shape == (3, 2)
    assert templates.created_at == store.get_gallery("g").created_at
    np.testing.assert_array_equal(templates.embeddings[2], unit(0, 1))
    assert store.gallery_templates("g", EmbeddingModel("other", "1.0", "plain", "int8")).subject_ids == []
    with pytest.raises(Conflict):  # all or nothing
        store.import_subjects("g", [("c", [template(1, 0)]), ("a", [template(1, 0)])])
    assert store.get_gallery("g").subject_count == 2
    store.delete_subject("g", "b")
    assert store.gallery_revision("g") > after


def test_the_changes_since_a_revision_are_those_of_the_subjects_written(store: SQLStorage) -> None:
    store.create_gallery("g")
    store.import_subjects("g", [("a", [template(1, 0)]), ("b", [template(0, 1)]), ("c", [template(1, 1)])])
    start = store.gallery_templates("g", MODEL)
    created = start.created_at
    assert store.gallery_changes("g", MODEL, created, start.revision).changed == []  # nothing since
    store.add_templates("g", "a", [template(1, 1)], lambda stored: None, 10)
    store.delete_subject("g", "b")
    store.create_subject("g", "d")
    store.add_templates("g", "d", [template(0, 1), NewTemplate(unit(1, 0), OTHER)], lambda stored: None, 10)
    changes = store.gallery_changes("g", MODEL, created, start.revision)
    assert changes.revision == store.gallery_revision("g") and changes.changed == ["a", "b", "d"]
    assert changes.subject_ids == ["a", "a", "d"]  # b has none left; d's other model's is not here
    np.testing.assert_array_equal(changes.embeddings, np.stack([unit(1, 0), unit(1, 1), unit(0, 1)]))
    # Where the log cannot tell: a gallery created again under the id, or a revision pruned away.
    assert store.gallery_changes("g", MODEL, created + 1.0, start.revision) is None
    assert store.gallery_changes("g", MODEL, created, start.revision - 1).changed == ["a", "b", "c", "d"]
    with store._transaction(write=True) as db:  # a revision whose write logged nothing (an older release)
        db.execute("DELETE FROM template_changes WHERE gallery_id = ? AND revision = ?", ("g", start.revision + 1))
    assert store.gallery_changes("g", MODEL, created, start.revision) is None
    for _ in range(CHANGES_KEPT):
        store.delete_template("g", "a", store.add_templates("g", "a", [template(0, 1)], lambda s: None, 10)[0].id)
    assert store.gallery_changes("g", MODEL, created, start.revision) is None
    store.delete_gallery("g")
    store.create_gallery("g")
    assert store.gallery_changes("g", MODEL, created, start.revision) is None


def test_a_patched_matrix_equals_one_read_whole(store: SQLStorage) -> None:
    """The search index patched with each write's changed subjects holds what reading the whole
    gallery gives, through enrolments, deletions and imports in any order."""
    from app.storage.search_index import SearchIndex, gallery_matrix

    rng = np.random.default_rng(1)
    store.create_gallery("g")
    index = SearchIndex()
    index.matrix(store, "g", MODEL)  # empty
    for step in range(60):
        action = rng.integers(4)
        subjects = [s.id for s in store.list_subjects("g", None, 1000).items]
        if action == 0 or not subjects:
            store.import_subjects("g", [(f"s{step}-{i}", [template(*rng.standard_normal(2))]) for i in range(3)])
        elif action == 1:
            store.add_templates("g", str(rng.choice(subjects)), [template(*rng.standard_normal(2))],
                                lambda stored: None, 100)
        elif action == 2:
            store.delete_subject("g", str(rng.choice(subjects)))
        else:
            subject = store.get_subject("g", str(rng.choice(subjects)))
            if subject.templates:
                store.delete_template("g", subject.id, subject.templates[0].id)
        if step % 3 == 0:
            held = index.matrix(store, "g", MODEL)
            whole = gallery_matrix(store.gallery_templates("g", MODEL))
            assert held.revision == whole.revision
            by_subject = dict(zip(held.subjects, zip(held.counts, held.centroids)))
            assert set(by_subject) == set(whole.subjects)
            for subject, count, centroid in zip(whole.subjects, whole.counts, whole.centroids):
                assert by_subject[subject][0] == count
                np.testing.assert_allclose(by_subject[subject][1], centroid, atol=1e-6)
    store.import_subjects("g", [("last", [template(1, 0)])])
    read_whole, store.gallery_templates = store.gallery_templates, None  # patched, not read whole
    held = index.matrix(store, "g", MODEL)
    store.gallery_templates = read_whole
    assert held.revision == store.gallery_revision("g") and "last" in set(held.subjects)


def test_a_closed_store_opens_again_when_used(tmp_path) -> None:
    store = open_storage(f"sqlite:///{tmp_path}/facever.sqlite3")
    store.migrate()
    store.create_gallery("g")
    store.close()
    assert store.get_gallery("g").id == "g"
    store.close()


def test_the_database_index_finds_what_an_exact_search_finds(store: SQLStorage) -> None:
    """PostgreSQL with pgvector searches its own HNSW index and re-ranks exactly; SQLite has no
    index of its own (the service searches its matrix, app.storage.search_index)."""
    from app.storage.search_index import gallery_matrix

    rng = np.random.default_rng(0)
    store.create_gallery("g")
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    store.import_subjects("g", [(f"s{i:03d}", [NewTemplate(unit(*vectors[i]), MODEL)]
                                 + ([NewTemplate(unit(*vectors[i] + 0.1), MODEL)] if i % 3 == 0 else []))
                                for i in range(300)])
    probe = unit(*rng.standard_normal(16))
    found = store.nearest("g", MODEL, probe, 10)
    if store.url_scheme == "sqlite":
        assert found is None
        return
    # The index is built in the background when a search first needs it; until then, None (exact
    # search in the service).
    deadline = time.monotonic() + 60
    while found is None:
        assert time.monotonic() < deadline, "the HNSW index was never built"
        time.sleep(0.1)
        found = store.nearest("g", MODEL, probe, 10)
    size, candidates = found
    matrix = gallery_matrix(store.gallery_templates("g", MODEL))
    exact = np.sqrt(np.clip(2 - 2 * matrix.centroids.astype(np.float64) @ probe, 0, 4))
    order = np.argsort(exact)[:10]
    assert size == 300
    assert [c.subject for c in candidates] == list(matrix.subjects[order])
    assert [c.score for c in candidates] == pytest.approx(exact[order], abs=1e-6)
    assert [c.templates for c in candidates] == list(matrix.counts[order])
    store.delete_subject("g", candidates[0].subject)  # gone from the index in the same transaction
    assert candidates[0].subject not in {c.subject for c in store.nearest("g", MODEL, probe, 10)[1]}


def test_the_test_server_names_its_postgresql_and_pgvector(postgres_server) -> None:
    """What bench.search_speed writes beside its pgvector figures; the wheel's server has pgvector."""
    versions = postgres_server.versions()
    assert versions["postgresql"].split(".")[0].isdigit()
    assert versions["pgvector"] is not None


def test_a_failed_index_build_is_not_tried_again_at_every_search(postgres_url, caplog, monkeypatch) -> None:
    """A build that failed (here: a centroid beyond half precision's range; on a CPU its pgvector was
    not built for, a crash of the whole server) waits before its next try, searches staying exact
    meanwhile; a replica started later tries again."""
    import psycopg

    def build_failures() -> int:
        return sum("building the search index" in r.getMessage() and "failed" in r.getMessage()
                   for r in caplog.records)

    store = open_storage(postgres_url)
    store.migrate()
    store.create_gallery("g")
    store.import_subjects("g", [(f"s{i}", [template(1, i, 2)]) for i in range(20)])
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE subject_centroids SET centroid = '[1e6, 0, 0]' WHERE subject_id = 's0'")
    probe = unit(1, 2, 3)
    assert store.nearest("g", MODEL, probe, 5) is None  # the build starts in the background
    deadline = time.monotonic() + 60
    while not build_failures():
        assert time.monotonic() < deadline, "the build neither failed nor was logged"
        time.sleep(0.1)
    while any(thread.name == "hnsw-3" for thread in threading.enumerate()):
        time.sleep(0.01)
    for _ in range(20):
        assert store.nearest("g", MODEL, probe, 5) is None
        assert not any(thread.name == "hnsw-3" for thread in threading.enumerate()), "a build started again"
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE subject_centroids SET centroid = '[0.5, 0, 0.5]' WHERE subject_id = 's0'")
    assert build_failures() == 1
    assert "tried again in 600 s" in next(r.getMessage() for r in caplog.records if "failed" in r.getMessage())
    store.close()

    monkeypatch.setattr("app.storage.postgres.INDEX_RECHECK_S", 0.1)  # the failed build's invalid index
    restarted = open_storage(postgres_url)
    restarted.migrate()
    deadline = time.monotonic() + 60
    while restarted.nearest("g", MODEL, probe, 5) is None:
        assert time.monotonic() < deadline, "the restarted replica never built the index"
        time.sleep(0.1)
    restarted.close()


# -- keys and the audit trail ----------------------------------------------------------------------


def event(action: str, gallery: str | None = "staff", subject: str | None = None, status: int = 201,
          matched: bool | None = None) -> AuditEvent:
    return AuditEvent("k1", action, gallery, subject, status, f"req-{action}", matched)


def test_keys_are_stored_listed_and_revoked_with_their_audit_entries(store: SQLStorage) -> None:
    key = KeyRecord("0123456789ab", "door", "f" * 64, ("read", "enrol"), ("acme-*", "shared"), 1000.0,
                    expires_at=4e9, rate_per_s=5.0, burst=10)
    store.create_key(key, event("key.create", None))
    assert store.get_key(key.id) == key and store.get_key("ba9876543210") is None
    assert store.key_count() == 1
    store.create_key(KeyRecord("00000000000a", "old", "e" * 64, ("admin",), None, 1000.0, expires_at=1001.0),
                     event("key.create", None))
    assert store.key_count() == 2  # expired ones count: keys existed
    assert [k.id for k in store.list_keys(None, 10).items] == ["00000000000a", key.id]
    store.touch_key(key.id, 2000.0)
    revoked = store.revoke_key(key.id, event("key.revoke", None, status=200))
    assert revoked.revoked_at is not None and revoked.last_used_at == 2000.0 and store.key_count() == 2
    assert store.revoke_key(key.id, event("key.revoke", None, status=200)).revoked_at == revoked.revoked_at
    with pytest.raises(NotFound) as missing:
        store.revoke_key("ba9876543210", event("key.revoke", None, status=200))
    assert missing.value.code == "key_not_found"
    actions = [entry.action for entry in store.audit_entries(AuditQuery(), 100)]
    assert actions == ["key.create", "key.create", "key.revoke", "key.revoke"]  # the refused revoke left none


def test_every_write_leaves_one_chained_entry_and_a_refused_one_none(store: SQLStorage) -> None:
    store.create_gallery("staff", event("gallery.create"))
    store.create_subject("staff", "alice", event("subject.create", subject="alice"))
    added = store.add_templates("staff", "alice", [template(1, 0, 0, 0)], accept, 10,
                                event("subject.enrol", subject="alice"))
    with pytest.raises(Conflict):  # refused inside the transaction: no entry
        store.create_subject("staff", "alice", event("subject.create", subject="alice"))

    def refuse(stored) -> None:
        raise Conflict("subject_mismatch", "no")

    with pytest.raises(Conflict):
        store.add_templates("staff", "alice", [template(0, 1, 0, 0)], refuse, 10, event("subject.enrol", subject="alice"))
    store.import_subjects("staff", [("bob", [template(0, 0, 1, 0)])], event("gallery.import"))
    store.record(event("subject.verify", subject="alice", status=200, matched=True))
    store.delete_template("staff", "alice", added[0].id, event("template.delete", subject="alice", status=200))
    store.delete_subject("staff", "bob", event("subject.delete", subject="bob", status=200))
    store.delete_gallery("staff", event("gallery.delete", status=200))

    entries = store.audit_entries(AuditQuery(), 100)
    assert [e.action for e in entries] == ["gallery.create", "subject.create", "subject.enrol", "gallery.import",
                                           "subject.verify", "template.delete", "subject.delete", "gallery.delete"]
    assert entries[4].matched is True and entries[0].matched is None and entries[0].request_id == "req-gallery.create"
    anchor, head, walk = store.audit_chain()
    report = verify_chain(walk, anchor, head)
    assert report.intact and report.checked == 8 and head == (entries[-1].seq, entries[-1].hash)
    assert [e.action for e in store.audit_entries(AuditQuery(subject_id="alice", action="subject.enrol"), 10)] == [
        "subject.enrol"]
    assert [e.seq for e in store.audit_entries(AuditQuery(after=entries[5].seq), 10)] == [e.seq for e in entries[6:]]


def test_pruning_moves_the_anchor_and_the_rest_still_verifies(store: SQLStorage) -> None:
    for _ in range(4):
        store.record(event("gallery.search", status=200, matched=False))
        time.sleep(0.01)
    entries = store.audit_entries(AuditQuery(), 10)
    assert store.prune_audit(entries[2].at) == 2
    anchor, head, walk = store.audit_chain()
    assert anchor == entries[1].hash and verify_chain(walk, anchor, head).intact
    assert store.prune_audit(0.0) == 0


def test_listings_hold_only_the_galleries_a_key_reaches(store: SQLStorage) -> None:
    for gallery in ("acme-1", "acme-2", "acme_x", "other", "shared"):
        store.create_gallery(gallery)
    assert [g.id for g in store.list_galleries(None, 10, ("acme-*", "shared")).items] == ["acme-1", "acme-2", "shared"]
    assert [g.id for g in store.list_galleries(None, 1, ("acme-*",)).items] == ["acme-1"]
    assert [g.id for g in store.list_galleries("acme-1", 10, ("acme-*",)).items] == ["acme-2"]
    assert store.list_galleries(None, 10, ()).items == []
    assert len(store.list_galleries(None, 10).items) == 5


# -- templates at rest ---------------------------------------------------------------------------

KEYS = parse_keys(f"k2:{base64.b64encode(b'2' * 32).decode()},k1:{base64.b64encode(b'1' * 32).decode()}")


def sealed(store: SQLStorage, *key_ids: str) -> SQLStorage:
    """The same database opened again with the template keys `key_ids` (none: in the clear)."""
    again = open_storage(store.url if hasattr(store, "url") else f"sqlite:///{store.path}",
                         TemplateCipher({key_id: KEYS[key_id] for key_id in key_ids}) if key_ids else None)
    again.migrate()
    return again


def test_sealed_templates_read_back_and_search_as_plain_ones(store: SQLStorage) -> None:
    store.create_gallery("staff")
    store.create_subject("staff", "alice")
    store.add_templates("staff", "alice", [template(1, 0, 0, 0)], accept, 10)  # in the clear
    secret = sealed(store, "k1")
    secret.add_templates("staff", "alice", [template(0, 1, 0, 0)], accept, 10)
    assert secret.sealed_counts() == {None: 1, "k1": 1}
    embeddings = [t.embedding for t in secret.get_subject("staff", "alice").templates]
    np.testing.assert_array_equal(np.stack(embeddings), np.stack([unit(1, 0, 0, 0), unit(0, 1, 0, 0)]))
    gallery = secret.gallery_templates("staff", MODEL)
    assert gallery.subject_ids == ["alice", "alice"] and gallery.embeddings.shape == (2, 4)
    secret.close()


def test_a_sealed_database_without_its_key_touches_nothing(store: SQLStorage) -> None:
    store.create_gallery("staff")
    store.create_subject("staff", "alice")
    secret = sealed(store, "k1")
    secret.add_templates("staff", "alice", [template(1, 0, 0, 0)], accept, 10)
    secret.close()
    with pytest.raises(MissingTemplateKey, match="'k1'"):
        sealed(store)
    with pytest.raises(MissingTemplateKey, match="'k1'"):
        sealed(store, "k2")


def test_a_moved_or_flipped_blob_is_corrupt_for_its_subject_only(store: SQLStorage) -> None:
    secret = sealed(store, "k1")
    secret.create_gallery("staff")
    for name, values in (("alice", (1, 0, 0, 0)), ("bob", (0, 1, 0, 0)), ("carol", (0, 0, 1, 0))):
        secret.create_subject("staff", name)
        secret.add_templates("staff", name, [template(*values)], accept, 10)
    with secret._transaction(write=True) as db:
        bob = db.execute("SELECT embedding FROM templates WHERE subject_id = 'bob'")[0][0]
        db.execute("UPDATE templates SET embedding = ? WHERE subject_id = 'alice'", (bytes(bob),))  # moved
        carol = bytearray(db.execute("SELECT embedding FROM templates WHERE subject_id = 'carol'")[0][0])
        carol[20] ^= 1
        db.execute("UPDATE templates SET embedding = ? WHERE subject_id = 'carol'", (bytes(carol),))  # flipped
    for name in ("alice", "carol"):
        with pytest.raises(CorruptTemplate, match=f"subject '{name}'") as corrupt:
            secret.get_subject("staff", name)
        assert corrupt.value.code == "template_corrupted"
    np.testing.assert_array_equal(secret.get_subject("staff", "bob").templates[0].embedding, unit(0, 1, 0, 0))
    assert secret.gallery_templates("staff", MODEL).subject_ids == ["bob"]  # the search leaves them out
    secret.close()


def test_reseal_moves_every_template_to_one_key_in_batches(store: SQLStorage) -> None:
    store.create_gallery("staff")
    store.import_subjects("staff", [(f"s{i}", [template(1, i, 0, 0)]) for i in range(5)])
    old = sealed(store, "k1")
    old.import_subjects("staff", [(f"t{i}", [template(0, 1, i, 0)]) for i in range(3)])
    old.close()
    both = sealed(store, "k2", "k1")
    before = {s: both.get_subject("staff", s).templates[0].embedding for s in ("s0", "t2")}
    assert [both.reseal("k2", 3) for _ in range(4)] == [3, 3, 2, 0]
    assert both.sealed_counts() == {"k2": 8}
    for subject, embedding in before.items():
        np.testing.assert_array_equal(both.get_subject("staff", subject).templates[0].embedding, embedding)
    with pytest.raises(MissingTemplateKey):
        both.reseal("k3", 10)
    both.close()
    sealed(store, "k2").close()  # k1 may go now


# -- retention and consent ------------------------------------------------------------------------


def test_exactly_the_expired_subjects_go_each_with_its_audit_entry(store: SQLStorage) -> None:
    store.create_gallery("kept")  # no retention: never swept
    store.create_gallery("door", retention=Retention(max_inactive_days=30, max_age_days=365))
    for gallery in ("kept", "door"):
        for name in ("old", "active"):
            store.create_subject(gallery, name)
            store.add_templates(gallery, name, [template(1, 0, 0, 0)], accept, 10)
    enrolled = store.get_subject("door", "old").enrolled_at
    assert store.get_subject("door", "old").expires_at == pytest.approx(enrolled + 30 * DAY_S)
    assert store.get_subject("kept", "old").expires_at is None
    later = enrolled + 20 * DAY_S
    with store._transaction(write=True) as db:  # the clock injected: "active" matched 20 days on
        db.execute("UPDATE subjects SET last_active_at = ? WHERE id = 'active'", (later,))
    assert store.get_subject("door", "active").expires_at == pytest.approx(later + 30 * DAY_S)

    day_31 = enrolled + 31 * DAY_S
    assert [(e.gallery_id, e.subject_id) for e in store.sweep_expired(day_31, dry_run=True)] == [("door", "old")]
    assert store.get_subject("door", "old")  # a dry run deletes nothing
    swept = store.sweep_expired(day_31)
    assert [(e.gallery_id, e.subject_id) for e in swept] == [("door", "old")]
    with pytest.raises(NotFound):
        store.get_subject("door", "old")
    entries = store.audit_entries(AuditQuery(action="subject.expire"), 10)
    assert [(e.key_id, e.gallery_id, e.subject_id) for e in entries] == [("retention", "door", "old")]
    assert store.sweep_expired(day_31) == []
    assert [e.subject_id for e in store.sweep_expired(enrolled + 366 * DAY_S)] == ["active"]  # max_age wins


def test_a_match_is_activity_that_extends_a_subject_s_life(store: SQLStorage) -> None:
    store.create_gallery("door", retention=Retention(max_inactive_days=1))
    store.create_subject("door", "alice")
    store.add_templates("door", "alice", [template(1, 0, 0, 0)], accept, 10)
    before = store.get_subject("door", "alice").expires_at
    time.sleep(0.01)
    store.record(event("subject.verify", gallery="door", subject="alice", status=200, matched=False))
    assert store.get_subject("door", "alice").expires_at == before  # no match: no activity
    store.record(event("subject.verify", gallery="door", subject="alice", status=200, matched=True))
    assert store.get_subject("door", "alice").expires_at > before


def test_a_gallery_that_requires_consent_enrols_only_with_a_reference(store: SQLStorage) -> None:
    store.create_gallery("signup", require_consent=True)
    store.create_subject("signup", "alice")
    with pytest.raises(ConsentRequired) as refused:
        store.add_templates("signup", "alice", [template(1, 0, 0, 0)], accept, 10)
    assert refused.value.code == "consent_required"
    store.add_templates("signup", "alice", [template(1, 0, 0, 0)], accept, 10,
                        event("subject.enrol", gallery="signup", subject="alice"), consent_ref="form-17")
    store.add_templates("signup", "alice", [template(0, 1, 0, 0)], accept, 10)  # it has one now
    assert store.get_subject("signup", "alice").consent_ref == "form-17"
    with pytest.raises(ConsentRequired):
        store.import_subjects("signup", [("bob", [template(0, 0, 1, 0)])])
    store.import_subjects("signup", [("bob", [template(0, 0, 1, 0)])], consent_refs={"bob": "form-18"})
    assert store.get_subject("signup", "bob").consent_ref == "form-18"
    gallery = store.set_gallery_policy("signup", Retention(max_age_days=10), False)
    assert gallery.retention.max_age_days == 10 and not gallery.require_consent


def test_a_duplicate_flag_is_stored_with_the_enrolment_and_cleared(store: SQLStorage) -> None:
    store.create_gallery("g", duplicate_check="report")
    assert store.get_gallery("g").duplicate_check == "report"
    store.create_subject("g", "again")
    flagged = (PossibleDuplicate("first", 0.41, 0.55), PossibleDuplicate("other", 0.5, 0.55))
    store.add_templates("g", "again", [template(1, 0, 0, 0)], accept, 10, possible_duplicates=flagged)
    assert store.get_subject("g", "again").possible_duplicates == flagged
    assert store.list_subjects("g", None, 10).items[0].possible_duplicates == flagged
    assert store.clear_duplicates("g", "again").possible_duplicates == ()
    assert store.get_subject("g", "again").possible_duplicates == ()
    assert store.set_gallery_policy("g", Retention(), False).duplicate_check == "off"  # replaced whole
    with pytest.raises(NotFound) as missing:
        store.clear_duplicates("g", "nobody")
    assert missing.value.code == "subject_not_found"


def test_a_job_s_progress_cancellation_and_pairs(store: SQLStorage) -> None:
    store.create_gallery("g")
    at = time.time()
    store.create_job(Job("j1", "g", "duplicates", "key", {"operating_point": "fpir_1e-3"}, "running", at, at))
    assert store.job_progress("j1", 10, 100) is False
    job = store.get_job("g", "j1")
    assert (job.state, job.done, job.total, job.parameters) == ("running", 10, 100, {"operating_point": "fpir_1e-3"})
    assert store.cancel_job("g", "j1").state == "running"
    assert store.job_progress("j1", 20, 100) is True  # asked to stop
    store.finish_job("j1", "cancelled", {"pairs": 0})
    assert store.get_job("g", "j1").state == "cancelled"

    store.create_job(Job("j2", "g", "duplicates", "key", {}, "running", at, at))
    store.finish_job("j2", "done", {"pairs": 3}, [("a", "b", 0.1, 0.5), ("a", "c", 0.2, 0.5), ("b", "c", 0.3, 0.5)])
    done = store.get_job("g", "j2")
    assert done.state == "done" and done.summary == {"pairs": 3} and done.finished_at is not None
    assert [(p.seq, p.first, p.second) for p in store.job_pairs("j2", 0, 2)] == [(1, "a", "b"), (2, "a", "c")]
    assert [p.score for p in store.job_pairs("j2", 2, 2)] == [0.3]
    store.cancel_job("g", "j2")  # a finished job is deleted, its pairs with it
    with pytest.raises(NotFound) as missing:
        store.get_job("g", "j2")
    assert missing.value.code == "job_not_found" and store.job_pairs("j2", 0, 10) == []

    store.create_job(Job("j3", "g", "duplicates", "key", {}, "running", at, at))
    store.delete_gallery("g")  # its jobs go with it; a job still running learns it must stop
    assert store.job_progress("j3", 1, 2) is True
    with pytest.raises(NotFound) as gone:
        store.get_job("g", "j3")
    assert gone.value.code == "gallery_not_found"
