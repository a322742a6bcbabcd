"""Grouping and the duplicate report at scale: 10^4 to 10^6 faces or subjects on 2 cores.

LFW has 13,233 faces, so larger sets are drawn from a model of LFW's own: identity sizes drawn from
LFW's, each identity's centre from a Gaussian fitted to the centres of LFW's identities with two or
more faces, each face its centre plus a residual from a Gaussian fitted to their faces' residuals,
normalised (the card's embeddings, plain, default face policy). Its impostor distances match LFW's
(1st percentile and median); its genuine ones are a little tighter, having no outliers.

- grouping: the card's calibrated rule at its threshold (POST /group, facever group) on N faces:
  the close pairs (exact blocks up to 2x10^5, faiss's inverted-file index above), then average
  linkage; pairwise and BCubed F against the drawn identities.
- report: a gallery of N subjects (one drawn face each) imported into a SQLite file, then the
  service's duplicate report job (app.services.duplicates): the gallery's matrix read from the
  database, every pair compared at the default search operating point, the pairs stored. Its
  people are distinct but for 1% enrolled twice (a face each time): recall and precision of those.

- index recall: at N faces, the close pairs faiss's index finds (as above 2x10^5) against the exact
  ones, with both times.

    python -m bench.grouping_scale [--group 10000 100000 1000000] [--report 100000 1000000]
        [--index-recall 100000] -> bench/results/<card>/grouping_scale.json

A part given no sizes is not run, and the JSON keeps what an earlier run measured for it.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from app.services.duplicates import DuplicateService, ReportRunner
from app.storage import open_storage
from app.storage.base import Job, NewTemplate
from app.storage.search_index import SearchIndex
from bench.machine import write_report
from model.evaluation.grouping_calibration import embed_all_lfw, person
from model.paths import DEFAULT_DATA_DIR, DEFAULT_ENCODER_DIR, REPORTS_DIR
from model.verify.grouping import EXACT_UP_TO, PROBES, close_pairs, indexed_close_pairs, scores

IMPORT_CHUNK = 10_000
REPORT_TWICE = 0.01  # the share of a report's people enrolled twice


class LFWShaped:
    """Faces drawn like LFW's: identity sizes, centres and residuals as fitted on the card's embeddings."""

    def __init__(self, embeddings: np.ndarray, truth: np.ndarray):
        self.sizes = np.bincount(truth)
        people = np.flatnonzero(self.sizes >= 2)
        centres = np.stack([embeddings[truth == p].mean(axis=0) for p in people])
        residuals = np.concatenate([embeddings[truth == p] - centre for p, centre in zip(people, centres)])
        dim = embeddings.shape[1]
        self.mean = centres.mean(axis=0)
        self.centre_factor = np.linalg.cholesky(np.cov(centres.T) + 1e-9 * np.eye(dim))
        self.residual_factor = np.linalg.cholesky(np.cov(residuals.T) + 1e-9 * np.eye(dim))

    def draw(self, count: int, seed: int, twice: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`count` unit vectors and their identities: of LFW's identity sizes, or where `twice` is
        given, each identity once, or twice for that share of them (a gallery of people)."""
        rng = np.random.default_rng(seed)
        sizes = rng.choice(self.sizes, size=count) if twice is None else 1 + (rng.random(count) < twice)
        truth = np.repeat(np.arange(count), sizes)[:count]
        centres = self.mean + rng.normal(size=(truth[-1] + 1, len(self.mean))) @ self.centre_factor.T
        faces = np.empty((count, len(self.mean)), np.float32)
        for start in range(0, count, 100_000):
            part = truth[start : start + 100_000]
            drawn = centres[part] + rng.normal(size=(len(part), len(self.mean))) @ self.residual_factor.T
            faces[start : start + len(part)] = drawn / np.linalg.norm(drawn, axis=1, keepdims=True)
        return faces, truth


def peak_rss_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def grouping_at(model: LFWShaped, rule, count: int) -> dict:
    faces, truth = model.draw(count, seed=count)
    started = time.perf_counter()
    pairs = len(close_pairs(faces, rule.threshold)[0])
    pairs_seconds = time.perf_counter() - started
    started = time.perf_counter()
    labels = rule.group(faces)  # finds the pairs again, then links them
    seconds = time.perf_counter() - started
    result = scores(labels, truth)
    return {"faces": count, "identities": int(truth.max() + 1), "close_pairs": pairs,
            "pairs_seconds": round(pairs_seconds, 1), "seconds": round(seconds, 1), "exact": count <= EXACT_UP_TO,
            "pairwise_f": round(result["pairwise_f"], 4), "bcubed_f": round(result["bcubed_f"], 4),
            "groups": result["groups"], "peak_rss_mib": peak_rss_mib()}


def report_at(model: LFWShaped, verifier, count: int) -> dict:
    faces, truth = model.draw(count, seed=count + 1, twice=REPORT_TWICE)
    duplicates = count - int(truth.max() + 1)
    embedding_model = verifier.embedding_model
    with tempfile.TemporaryDirectory() as folder:
        storage = open_storage(f"sqlite:///{folder}/scale.sqlite3")
        storage.migrate()
        storage.create_gallery("scale")
        started = time.perf_counter()
        for start in range(0, count, IMPORT_CHUNK):
            storage.import_subjects("scale", [(f"s{i}", [NewTemplate(faces[i], embedding_model)])
                                              for i in range(start, min(start + IMPORT_CHUNK, count))])
        import_seconds = time.perf_counter() - started
        service = DuplicateService(storage, verifier, SearchIndex(), ReportRunner())
        at = time.time()
        job = Job("scale", "scale", "duplicates", "bench", {}, "running", at, at)
        storage.create_job(job)
        started = time.perf_counter()
        service._report(job, verifier.search_decision())
        seconds = time.perf_counter() - started
        done = storage.get_job("scale", "scale")
        found = storage.job_pairs("scale", 0, count)
        storage.close()
    same = sum(truth[int(pair.first[1:])] == truth[int(pair.second[1:])] for pair in found)
    return {"subjects": count, "duplicates": duplicates, "import_seconds": round(import_seconds, 1),
            "seconds": round(seconds, 1), "state": done.state, "pairs": done.summary.get("pairs"),
            "recall": round(same / duplicates, 4), "precision": round(same / len(found), 4) if found else None,
            "exact": count <= EXACT_UP_TO, "peak_rss_mib": peak_rss_mib()}


def index_recall_at(model: LFWShaped, threshold: float, count: int) -> dict:
    faces, _ = model.draw(count, seed=count)
    started = time.perf_counter()
    exact = close_pairs(faces, threshold)
    exact_seconds = time.perf_counter() - started
    started = time.perf_counter()
    indexed = indexed_close_pairs(faces, threshold)
    indexed_seconds = time.perf_counter() - started
    found = set(zip(indexed[0].tolist(), indexed[1].tolist()))
    truth = set(zip(exact[0].tolist(), exact[1].tolist()))
    return {"faces": count, "probes": PROBES, "exact_pairs": len(truth), "indexed_pairs": len(found),
            "recall": round(len(found & truth) / len(truth), 5), "exact_seconds": round(exact_seconds, 1),
            "indexed_seconds": round(indexed_seconds, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_ENCODER_DIR)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--group", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--report", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--index-recall", type=int, nargs="*", default=[100_000])
    args = parser.parse_args(argv)
    from model.verify.pipeline import FaceVerifier  # the networks load here, not on import

    verifier = FaceVerifier.from_folders(args.weights)
    embedded = embed_all_lfw(verifier, args.data)
    truth = np.unique([person(path) for path in embedded.paths], return_inverse=True)[1]
    model = LFWShaped(embedded.normalised(flip_tta=verifier.flip_tta).astype(np.float64), truth)
    rule = verifier.grouping_rule()
    out = REPORTS_DIR / verifier.card.name / "grouping_scale.json"
    earlier = json.loads(out.read_text()) if out.exists() else {}
    report: dict = {"what": __doc__.splitlines()[0], "model": verifier.card.name, "rule": rule.rule,
                    "threshold": rule.threshold, "exact_up_to": EXACT_UP_TO}
    for part, sizes in (("grouping", args.group), ("report", args.report), ("index_recall", args.index_recall)):
        report[part] = [] if sizes else earlier.get(part, [])
    for count in args.index_recall:
        row = index_recall_at(model, rule.threshold, count)
        report["index_recall"].append(row)
        print(f"index at {count:,} faces: recall {row['recall']} of {row['exact_pairs']:,} exact pairs "
              f"({row['indexed_seconds']} s against {row['exact_seconds']} s exact)", flush=True)
        write_report(out, report)
    for count in args.group:
        row = grouping_at(model, rule, count)
        report["grouping"].append(row)
        print(f"grouping {count:>9,} faces: {row['seconds']:>7.1f} s ({row['pairs_seconds']} s of it finding "
              f"{row['close_pairs']:,} close pairs{'' if row['exact'] else ', indexed'}); pairwise F "
              f"{row['pairwise_f']}, BCubed F {row['bcubed_f']}; peak RSS {row['peak_rss_mib']} MiB", flush=True)
        write_report(out, report)
    for count in args.report:
        row = report_at(model, verifier, count)
        report["report"].append(row)
        print(f"report over {count:>9,} subjects: {row['seconds']:>7.1f} s ({row['state']}, {row['pairs']} pairs"
              f"{'' if row['exact'] else ', indexed'}; recall {row['recall']}, precision {row['precision']} of "
              f"{row['duplicates']} people enrolled twice); import {row['import_seconds']} s; peak RSS "
              f"{row['peak_rss_mib']} MiB", flush=True)
        write_report(out, report)


if __name__ == "__main__":
    main()
