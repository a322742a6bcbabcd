"""Duplicate identities on LFW: recall and precision of the enrolment's check and the gallery's report.

Measured on people who chose no threshold of theirs: the held-out half of LFW's identities by name
hash (the search thresholds both use were chosen on the other half, model/evaluation/).

The held-out identities are ordered by sha256 of the name. Every fourth is a newcomer; the others
form the gallery, each enrolled with one photo (drawn at random, seeded by the name). Then, in a
seeded random order, every gallery person with a second photo enrols again under a new id with it
(a duplicate), and every newcomer enrols with one photo (not a duplicate). Each of these runs the
service's own check (app.services.duplicates: the gallery searched at its operating point, for its
size at that moment), in report mode, so each is stored and the gallery grows. Then the service's
report job compares every pair of subjects. Faces are chosen by the service's default policy and
embedded by the card (plain); the store is a SQLite file, the index the service's own.

Check: recall = duplicates flagged naming their first id; precision = flagged enrolments whose
matches are all the same person (and flags naming someone else are counted). Report: recall = the
duplicate pairs found; precision = reported pairs that are one person.

    python -m bench.duplicates [--weights DIR] [--data DIR] -> bench/results/<card>/duplicates_lfw.json
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np

from app.services.duplicates import DuplicateService, ReportRunner
from app.storage import open_storage
from app.storage.base import Job, NewTemplate
from app.storage.search_index import SearchIndex
from bench.machine import write_report
from model.evaluation.grouping_calibration import embed_all_lfw
from model.evaluation.protocols import split_identities
from model.evaluation.subject_calibration import name_seed
from model.paths import DEFAULT_DATA_DIR, DEFAULT_ENCODER_DIR, REPORTS_DIR

GALLERY = "lfw"
IMPORT_CHUNK = 1000


def plan(paths: list[str]) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    """The gallery (person -> the row of their one photo) and the enrolments tested, in order:
    (new subject id, true person, row)."""
    _, held_out = split_identities(paths)
    names = sorted(held_out, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    gallery, tested = {}, []
    for position, name in enumerate(names):
        rows = np.random.default_rng(name_seed(name)).permutation(held_out[name])
        if position % 4 == 3:
            tested.append((f"new-{name}", name, int(rows[0])))
            continue
        gallery[name] = int(rows[0])
        if len(rows) > 1:
            tested.append((f"again-{name}", name, int(rows[1])))
    order = np.random.default_rng(0).permutation(len(tested))
    return gallery, [tested[i] for i in order]


def precision_recall(true_positive: int, flagged: int, positives: int) -> dict:
    return {"recall": true_positive / positives if positives else None,
            "precision": true_positive / flagged if flagged else None,
            "true_positives": true_positive, "flagged": flagged, "positives": positives}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_ENCODER_DIR)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    from model.verify.pipeline import FaceVerifier  # the networks load here, not on import

    verifier = FaceVerifier.from_folders(args.weights)
    embedded = embed_all_lfw(verifier, args.data)
    embeddings = embedded.normalised(flip_tta=verifier.flip_tta)
    person = [path.split("/")[0] for path in embedded.paths]
    gallery, tested = plan(embedded.paths)
    model = verifier.embedding_model

    def template(row: int) -> NewTemplate:
        return NewTemplate(embeddings[row], model)

    with tempfile.TemporaryDirectory() as folder:
        storage = open_storage(f"sqlite:///{folder}/bench.sqlite3")
        storage.migrate()
        storage.create_gallery(GALLERY)
        people = list(gallery.items())
        for start in range(0, len(people), IMPORT_CHUNK):
            storage.import_subjects(GALLERY, [(name, [template(row)]) for name, row in people[start:start + IMPORT_CHUNK]])
        service = DuplicateService(storage, verifier, SearchIndex(), ReportRunner())
        is_duplicate = {subject: subject.startswith("again-") for subject, _, _ in tested}
        true_flags = wrong_flags = flagged = 0
        started = time.perf_counter()
        for subject, name, row in tested:
            matches = service.possible_duplicates(GALLERY, [template(row)])
            named = {match.subject.removeprefix("again-").removeprefix("new-") for match in matches}
            if matches:
                flagged += 1
                wrong_flags += bool(named - {name})
                true_flags += is_duplicate[subject] and named == {name}
            storage.import_subjects(GALLERY, [(subject, [template(row)])])
        check_seconds = time.perf_counter() - started
        duplicates = sum(is_duplicate.values())

        reports = {}
        for point in ("fpir_1e-3", "fpir_1e-2"):
            at = time.time()
            job = Job(f"report-{point}", GALLERY, "duplicates", "bench", {"operating_point": point}, "running", at, at)
            storage.create_job(job)
            started = time.perf_counter()
            service._report(job, verifier.search_decision(operating_point=point))
            seconds = time.perf_counter() - started
            pairs = storage.job_pairs(job.id, 0, 10**6)
            same = sum(pair.first.removeprefix("again-") == pair.second.removeprefix("again-") for pair in pairs)
            reports[point] = {**precision_recall(same, len(pairs), duplicates), "seconds": round(seconds, 2),
                              "gallery_size": storage.get_job(GALLERY, job.id).summary["gallery_size"]}
        storage.close()

    report = {
        "gallery_people": len(gallery), "tested_enrolments": len(tested), "duplicates": duplicates,
        "newcomers": len(tested) - duplicates, "faces_in_lfw": len(person),
        "check": {"operating_point": verifier.card.search_for(verifier.flip_tta).default,
                  **precision_recall(true_flags, flagged, duplicates), "flags_naming_someone_else": wrong_flags,
                  "ms_per_check": round(1000 * check_seconds / len(tested), 2)},
        "report": reports,
    }
    check = report["check"]
    print(f"gallery of {len(gallery)} held-out LFW people (one photo each); {len(tested)} enrolments tested: "
          f"{duplicates} duplicates, {len(tested) - duplicates} newcomers")
    print(f"enrolment check at {check['operating_point']}: recall {check['recall']:.4f}, precision "
          f"{check['precision']:.4f} ({check['flagged']} flagged, {wrong_flags} naming someone else)")
    for point, result in reports.items():
        print(f"gallery report at {point}: recall {result['recall']:.4f}, precision {result['precision']:.4f} "
              f"({result['flagged']} pairs over {result['gallery_size']} subjects, {result['seconds']} s)")
    write_report(REPORTS_DIR / verifier.card.name / "duplicates_lfw.json",
                 {"what": __doc__.splitlines()[0], "model": verifier.card.name,
                  "command": "python -m bench.duplicates", **report})


if __name__ == "__main__":
    main()
