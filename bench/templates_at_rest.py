"""What sealing templates at rest costs, in this process on SQLite files: the same operations with
template keys and without, in the same run.

    python -m bench.templates_at_rest [--sizes 100000 1000000] [--repeats 200]

- p50 of an enrolment's storage write (one template, its check reading the subject's), of a
  subject verification's read (the subject with its templates, decrypted), and of a warm search
  (a gallery of 10^4 subjects, the index held);
- the first search after a start (the whole gallery read, decrypted, and its centroids made) at
  each size, each store read twice in turns and the second read kept (both from the page cache):
  the in-service index is what searches where templates are sealed, since pgvector cannot index
  ciphertext.
Writes bench/results/templates_at_rest.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from app.storage import open_storage
from app.storage.base import NewTemplate
from app.storage.crypto import TemplateCipher, new_key_text, parse_keys
from app.storage.search_index import SearchIndex
from bench.machine import write_report
from model.paths import REPORTS_DIR
from model.types import EmbeddingModel

MODEL = EmbeddingModel("bench", "1", "plain", "int8")
DIM = 256
IMPORT_CHUNK = 5000


def vectors(count: int, seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return values / np.linalg.norm(values, axis=1, keepdims=True)


def filled(path: Path, cipher: TemplateCipher | None, size: int):
    """A gallery of `size` subjects of one template each."""
    storage = open_storage(f"sqlite:///{path}", cipher)
    storage.migrate()
    storage.create_gallery("bench")
    for start in range(0, size, IMPORT_CHUNK):
        chunk = vectors(min(IMPORT_CHUNK, size - start), start)
        storage.import_subjects("bench", [(f"s{start + i}", [NewTemplate(v, MODEL)]) for i, v in enumerate(chunk)])
    return storage


def p50_ms(times: list[float]) -> float:
    return round(statistics.median(times) * 1000, 3)


def operations(stores: dict, repeats: int) -> dict:
    """Each operation's p50 on each store, the stores taking turns at every repeat so that neither
    sees a quieter or warmer machine than the other."""
    probe = vectors(1, 999)[0]
    indexes = {name: SearchIndex() for name in stores}
    for name, storage in stores.items():
        indexes[name].search(storage, "bench", MODEL, probe, 5)
    times = {name: {"enrol_write": [], "subject_read": [], "search_warm": []} for name in stores}
    for repeat in range(repeats):
        for name, storage in stores.items():
            subject, vector = f"s{repeat}", vectors(1, 10_000 + repeat)[0]
            started = time.perf_counter()
            storage.add_templates("bench", subject, [NewTemplate(vector, MODEL)], lambda stored: None, 100)
            times[name]["enrol_write"].append(time.perf_counter() - started)
            started = time.perf_counter()
            storage.get_subject("bench", subject)
            times[name]["subject_read"].append(time.perf_counter() - started)
            started = time.perf_counter()
            indexes[name].search(storage, "bench", MODEL, probe, 5)  # patched with the enrolment just made
            times[name]["search_warm"].append(time.perf_counter() - started)
    return {name: {op: p50_ms(values) for op, values in ops.items()} for name, ops in times.items()}


def first_search_s(path: Path, cipher: TemplateCipher | None) -> float:
    """The first search of a store opened afresh, as after a restart: the whole gallery read (and
    decrypted) and its centroids made."""
    storage = open_storage(f"sqlite:///{path}", cipher)
    storage.migrate()
    started = time.perf_counter()
    SearchIndex().search(storage, "bench", MODEL, vectors(1, 999)[0], 5)
    elapsed = time.perf_counter() - started
    storage.close()
    return round(elapsed, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPORTS_DIR / "templates_at_rest.json")
    args = parser.parse_args()
    cipher = TemplateCipher(parse_keys(new_key_text("bench")))
    report: dict = {"command": "python -m bench.templates_at_rest", "dim": DIM, "operations": {}, "first_search_s": {}}
    variants = {"off": None, "on": cipher}
    with tempfile.TemporaryDirectory() as folder:
        stores = {name: filled(Path(folder) / f"ops-{name}.sqlite3", keys, 10_000) for name, keys in variants.items()}
        report["operations"] = operations(stores, args.repeats)
        for storage in stores.values():
            storage.close()
        report["operations"]["ratio_on_over_off"] = {
            op: round(report["operations"]["on"][op] / report["operations"]["off"][op], 3)
            for op in report["operations"]["off"]}
        print(report["operations"])
        for size in args.sizes:
            paths = {name: Path(folder) / f"first-{name}-{size}.sqlite3" for name in variants}
            row = {}
            for name, keys in variants.items():
                started = time.perf_counter()
                filled(paths[name], keys, size).close()
                row[f"import_s_{name}"] = round(time.perf_counter() - started, 1)
            # Each read twice, in turns; the second of each counts: both files then come from the
            # page cache, so the difference is the decryption's.
            for name in ("off", "on", "off", "on"):
                row[name] = first_search_s(paths[name], variants[name])
            row["ratio_on_over_off"] = round(row["on"] / row["off"], 3)
            for path in paths.values():
                path.unlink()
            report["first_search_s"][str(size)] = row
            print(size, row)
    write_report(args.out, report)


if __name__ == "__main__":
    main()
