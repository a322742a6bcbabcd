"""1:N search at scale: galleries of 10^4, 10^5 and 10^6 templates in the embedded store (SQLite),
searched exactly by the service's own index (app/search.py).

Each gallery holds one template per subject: LFW's 13,233 real templates (the default encoder's, plain),
then random unit vectors of the same dimension as fillers. Reported per size: the import rate (one
transaction per 10,000 subjects), the rate of enrolling subjects one at a time as the API does
(two transactions each: create, enrol), POST /galleries/{g}/import through a served `facever serve`
(1,000 subjects a request), the first search's build of the matrix from the database, the
first search after one enrolment and after one deletion (the matrix patched with that subject),
the RSS it adds, and the p50/p99 of searches with probes that are other LFW photos of enrolled
people (the revision check, the matrix product and the top-k included), with their rank-1 hits.

Then the same galleries in PostgreSQL with pgvector (HNSW, re-ranked exactly): import rate, search
p50/p99 and recall@1/@10 against exact search.

    python -m bench.search_speed [--sizes 10000 100000 1000000] [--pgvector-sizes 10000 100000 1000000]
        -> bench/results/search.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from app.storage.search_index import SearchIndex
from app.storage import open_storage
from app.storage.base import NewTemplate
from bench.machine import write_report
from bench.server import memory_mib
from model.types import EmbeddingModel
from model.paths import DEFAULT_DATA_DIR, DEFAULT_ENCODER_DIR, REPORTS_DIR

IMPORT_CHUNK = 10_000
ONE_BY_ONE = 2_000
SEARCHES = 300
TOP_K = 10


def lfw_templates(weights: Path, data_dir: Path) -> tuple[list[str], np.ndarray, EmbeddingModel]:
    from model.evaluation.embeddings import embed_lfw
    from model.verify.pipeline import FaceVerifier

    verifier = FaceVerifier.from_folders(weights)
    embeddings = embed_lfw(verifier, data_dir)
    made_by = verifier.embedding_model
    model = EmbeddingModel(made_by.name, made_by.version, made_by.inference, verifier.precision)
    return embeddings.paths, embeddings.normalised(verifier.flip_tta).astype(np.float32), model


def gallery_vectors(real: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    fillers = rng.standard_normal((max(size - len(real), 0), real.shape[1])).astype(np.float32)
    fillers /= np.linalg.norm(fillers, axis=1, keepdims=True)
    return np.concatenate([real[:size], fillers])


def gallery(paths: list[str], real: np.ndarray, size: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The gallery's vectors (subject i is s{i:07d}): the first image of each LFW identity, then
    fillers; and the probes: the second image of the first SEARCHES identities that have one, with
    the subject their first image was enrolled as."""
    rows_of: dict[str, list[int]] = {}
    for row, path in enumerate(paths):
        rows_of.setdefault(path.split("/")[0], []).append(row)
    vectors = gallery_vectors(real[[rows[0] for rows in rows_of.values()]], size, np.random.default_rng(size))
    probes = [(rows[1], subject) for subject, rows in enumerate(rows_of.values()) if len(rows) > 1][:SEARCHES]
    return vectors, probes


def imported(store, vectors: np.ndarray, model: EmbeddingModel) -> float:
    """The gallery `bench` created and filled, one transaction per IMPORT_CHUNK; the seconds it took."""
    store.migrate()
    store.create_gallery("bench")
    started = time.perf_counter()
    for start in range(0, len(vectors), IMPORT_CHUNK):
        store.import_subjects("bench", [(f"s{i:07d}", [NewTemplate(vectors[i], model)])
                                        for i in range(start, min(start + IMPORT_CHUNK, len(vectors)))])
    return time.perf_counter() - started


def measure(size: int, paths: list[str], real: np.ndarray, model: EmbeddingModel, folder: Path) -> dict:
    vectors, probe_rows = gallery(paths, real, size)
    store = open_storage(f"sqlite:///{folder}/search-{size}.sqlite3")
    import_s = imported(store, vectors, model)
    store.create_gallery("one-by-one")
    started = time.perf_counter()
    for i in range(ONE_BY_ONE):
        store.create_subject("one-by-one", f"s{i:07d}")
        store.add_templates("one-by-one", f"s{i:07d}", [NewTemplate(vectors[i], model)], lambda stored: None, 100)
    one_by_one_s = time.perf_counter() - started

    index = SearchIndex()
    rss_before = memory_mib(os.getpid())
    started = time.perf_counter()
    index.matrix(store, "bench", model)
    build_s = time.perf_counter() - started
    rss_after = memory_mib(os.getpid())
    matrix_mib = index.matrix(store, "bench", model).centroids.nbytes / 2**20
    times, hits = [], 0
    for row, enrolled_at in probe_rows:
        started = time.perf_counter()
        _, candidates = index.search(store, "bench", model, real[row], TOP_K)
        times.append((time.perf_counter() - started) * 1000)
        hits += candidates[0].subject == f"s{enrolled_at:07d}"
    # One write (a new subject enrolled), then a deletion: the next searches patch the matrix with
    # the subject each changed (app.storage.search_index), where a full read takes first_search_build_s.
    newcomer = np.random.default_rng(1).standard_normal(real.shape[1]).astype(np.float32)
    newcomer /= np.linalg.norm(newcomer)

    def timed_search() -> tuple[float, str]:
        started = time.perf_counter()
        _, candidates = index.search(store, "bench", model, newcomer, TOP_K)
        return time.perf_counter() - started, candidates[0].subject

    store.create_subject("bench", "newcomer")
    store.add_templates("bench", "newcomer", [NewTemplate(newcomer, model)], lambda stored: None, 100)
    after_enrolment_s, nearest = timed_search()
    assert nearest == "newcomer"
    store.delete_subject("bench", "newcomer")
    after_deletion_s, nearest = timed_search()
    assert nearest != "newcomer"
    store.close()
    return {
        "templates": size, "real_templates": min(size, len({path.split("/")[0] for path in paths})),
        "import_templates_per_s": round(size / import_s), "import_s": round(import_s, 1),
        "one_by_one_templates_per_s": round(ONE_BY_ONE / one_by_one_s),
        "one_by_one_seconds_for_1e5": round(100_000 * one_by_one_s / ONE_BY_ONE, 1),
        "first_search_build_s": round(build_s, 2), "index_rss_mib": round(rss_after - rss_before, 1),
        "search_after_one_enrolment_s": round(after_enrolment_s, 3),
        "search_after_one_deletion_s": round(after_deletion_s, 3),
        "index_matrix_mib": round(matrix_mib, 1),
        "search_ms": {"p50": round(float(np.percentile(times, 50)), 2), "p99": round(float(np.percentile(times, 99)), 2)},
        "searches": len(times), "rank1_hits": hits,
        "database_mib": round((folder / f"search-{size}.sqlite3").stat().st_size / 2**20, 1),
    }


def measure_pgvector(size: int, paths: list[str], real: np.ndarray, model: EmbeddingModel, server) -> dict:
    """The same gallery in PostgreSQL with pgvector: the import rate, the HNSW index's build (in bulk,
    in the background, when the first search needs it), search p50/p99 through the index with its
    exact re-rank, and recall@1 and @10 against the exact search of the same vectors."""
    from app.storage.postgres import PostgresStorage

    vectors, probe_rows = gallery(paths, real, size)
    probes = [row for row, _ in probe_rows]
    store = PostgresStorage(server.fresh_database(f"search_{size}"))
    import_s = imported(store, vectors, model)
    assert store.vectors, "the PostgreSQL server has no pgvector"
    started = time.perf_counter()
    while store.nearest("bench", model, vectors[0], TOP_K) is None:  # the first search starts the index's build
        time.sleep(0.5)
    index_s = time.perf_counter() - started
    times, recall1, recall10 = [], 0, 0.0
    exact_all = vectors.astype(np.float64)
    for row in probes:
        started = time.perf_counter()
        _, candidates = store.nearest("bench", model, real[row], TOP_K)
        times.append((time.perf_counter() - started) * 1000)
        exact = np.argsort(-(exact_all @ real[row].astype(np.float64)))[:TOP_K]
        truth = [f"s{i:07d}" for i in exact]
        recall1 += candidates[0].subject == truth[0]
        recall10 += len({c.subject for c in candidates} & set(truth)) / TOP_K
    store.close()
    return {"templates": size, "import_templates_per_s": round(size / import_s), "import_s": round(import_s, 1),
            "index_build_s": round(index_s, 1),
            "search_ms": {"p50": round(float(np.percentile(times, 50)), 2),
                          "p99": round(float(np.percentile(times, 99)), 2)},
            "recall_at_1": recall1 / len(probes), "recall_at_10": round(recall10 / len(probes), 4),
            "searches": len(probes)}


def http_import(real: np.ndarray, model: EmbeddingModel, folder: Path, requests: int = 20) -> dict:
    """Templates per second through POST /galleries/{g}/import of a served `facever serve`, in
    requests of MAX_IMPORT_SUBJECTS subjects of one embedding each (LFW's real ones, over again)."""
    import httpx

    from app.schemas.galleries import MAX_IMPORT_SUBJECTS
    from bench.server import running_server

    made_by = {"name": model.name, "version": model.version, "inference": model.inference}
    env = {"FACEVER_STORAGE_URL": f"sqlite:///{folder}/http-import.sqlite3"}
    with running_server(env) as server, httpx.Client(base_url=server.base_url, timeout=120) as client:
        assert client.post("/galleries", json={"id": "bulk"}).status_code == 201
        started = time.perf_counter()
        for request in range(requests):
            subjects = [{"id": f"r{request}-{i}", "embeddings": [{"embedding": real[(request * MAX_IMPORT_SUBJECTS + i)
                                                                                     % len(real)].tolist(),
                                                                   "model": made_by}]}
                        for i in range(MAX_IMPORT_SUBJECTS)]
            response = client.post("/galleries/bulk/import", json={"subjects": subjects})
            assert response.status_code == 201, response.text
        seconds = time.perf_counter() - started
    templates = requests * MAX_IMPORT_SUBJECTS
    return {"templates": templates, "seconds": round(seconds, 1), "templates_per_s": round(templates / seconds),
            "seconds_for_1e5": round(100_000 * seconds / templates, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--pgvector-sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000],
                        help="the same galleries in PostgreSQL with pgvector (tests/support/postgres.py starts one; "
                        "10^6 takes about 20 minutes on 2 cores, most of it the index's build)")
    parser.add_argument("--weights", type=Path, default=DEFAULT_ENCODER_DIR)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=REPORTS_DIR / "search.json")
    args = parser.parse_args(argv)
    paths, real, model = lfw_templates(args.weights, args.data)
    rows = []
    with tempfile.TemporaryDirectory(prefix="facever-search-") as folder:
        for size in args.sizes:
            rows.append(measure(size, paths, real, model, Path(folder)))
            row = rows[-1]
            print(f"{size:>9,} templates: import {row['import_templates_per_s']:,}/s, one by one "
                  f"{row['one_by_one_templates_per_s']:,}/s ({row['one_by_one_seconds_for_1e5']} s for 10^5), "
                  f"first search {row['first_search_build_s']} s, +{row['index_rss_mib']} MiB, "
                  f"after one enrolment / deletion {row['search_after_one_enrolment_s']} / "
                  f"{row['search_after_one_deletion_s']} s, "
                  f"search p50 {row['search_ms']['p50']} ms p99 {row['search_ms']['p99']} ms, "
                  f"rank-1 {row['rank1_hits']}/{row['searches']}")
        imported = http_import(real, model, Path(folder))
    print(f"HTTP import: {imported['templates_per_s']:,} templates/s ({imported['seconds_for_1e5']} s for 10^5)")
    pgvector, versions = [], {}
    if args.pgvector_sizes:
        from tests.support.postgres import started_postgres

        with started_postgres() as server:
            versions = server.versions()
            for size in args.pgvector_sizes:
                pgvector.append(measure_pgvector(size, paths, real, model, server))
                row = pgvector[-1]
                print(f"{size:>9,} templates, pgvector: import {row['import_templates_per_s']:,}/s, index built in "
                      f"{row['index_build_s']} s, search p50 "
                      f"{row['search_ms']['p50']} ms p99 {row['search_ms']['p99']} ms, recall@1 "
                      f"{row['recall_at_1']:.3f} @10 {row['recall_at_10']:.3f}")
    write_report(args.out, {"engine": "numpy float32 (exact), SQLite", "top_k": TOP_K, "sizes": rows,
                            "http_import": imported,
                            "pgvector": {"engine": "PostgreSQL 18, pgvector HNSW (halfvec, inner product, "
                                                   "ef_search 200), exact re-rank of max(4 x top_k, 40)",
                                         **versions, "sizes": pgvector}},
                  threads=2)


if __name__ == "__main__":
    main()
