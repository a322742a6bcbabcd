"""What sealing templates at rest costs, in this process on SQLite files: the same operations with
template keys and without, in the same run.

    python -m bench.templates_at_rest [--sizes 100000 1000000] [--repeats 200]

- p50 of an enrolment's storage write (one template, its check reading the subject's), of a
  subject verification's read (the subject with its templates, decrypted), and of a warm search
  (a gallery of 10^4 subjects, the index held);
- the first search after a start (the whole gallery read, decrypted, and its centroids made) at
  each size: the in-service index is what searches where templates are sealed, since pgvector
  cannot index ciphertext.
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


def operations(storage, repeats: int) -> dict:
    probe = vectors(1, 999)[0]
    index = SearchIndex()
    index.search(storage, "bench", MODEL, probe, 5)
    times: dict[str, list[float]] = {"enrol_write": [], "subject_read": [], "search_warm": []}
    for index_number in range(repeats):
        subject = f"s{index_number}"
        started = time.perf_counter()
        storage.add_templates("bench", subject, [NewTemplate(vectors(1, 10_000 + index_number)[0], MODEL)],
                              lambda stored: None, 100)
        times["enrol_write"].append(time.perf_counter() - started)
        started = time.perf_counter()
        storage.get_subject("bench", subject)
        times["subject_read"].append(time.perf_counter() - started)
        started = time.perf_counter()
        index.search(storage, "bench", MODEL, probe, 5)  # patched with the enrolment just made
        times["search_warm"].append(time.perf_counter() - started)
    return {name: p50_ms(values) for name, values in times.items()}


def first_search_s(storage) -> float:
    started = time.perf_counter()
    SearchIndex().search(storage, "bench", MODEL, vectors(1, 999)[0], 5)
    return round(time.perf_counter() - started, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPORTS_DIR / "templates_at_rest.json")
    args = parser.parse_args()
    cipher = TemplateCipher(parse_keys(new_key_text("bench")))
    report: dict = {"command": "python -m bench.templates_at_rest", "dim": DIM, "operations": {}, "first_search_s": {}}
    with tempfile.TemporaryDirectory() as folder:
        for name, keys in (("off", None), ("on", cipher)):
            storage = filled(Path(folder) / f"ops-{name}.sqlite3", keys, 10_000)
            report["operations"][name] = operations(storage, args.repeats)
            storage.close()
        report["operations"]["ratio_on_over_off"] = {
            op: round(report["operations"]["on"][op] / report["operations"]["off"][op], 3)
            for op in report["operations"]["off"]}
        print(report["operations"])
        for size in args.sizes:
            row = {}
            for name, keys in (("off", None), ("on", cipher)):
                path = Path(folder) / f"first-{name}-{size}.sqlite3"
                started = time.perf_counter()
                storage = filled(path, keys, size)
                row[f"import_s_{name}"] = round(time.perf_counter() - started, 1)
                storage.close()
                storage = open_storage(f"sqlite:///{path}", keys)  # as after a restart
                storage.migrate()
                row[name] = first_search_s(storage)
                storage.close()
                path.unlink()
            row["ratio_on_over_off"] = round(row["on"] / row["off"], 3)
            report["first_search_s"][str(size)] = row
            print(size, row)
    write_report(args.out, report)


if __name__ == "__main__":
    main()
