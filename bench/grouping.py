"""Grouping quality on all of LFW: 13,233 faces of 5,749 people, grouped by each rule of
model/verify/grouping.py on the same embeddings, each rule's threshold chosen on LFW View 1 only.

    python -m bench.grouping [--weights DIR] [--data DIR]

Each image's face is chosen by the service's default policy (`subject`) and embedded by the card
(plain, as the service serves it; cached by model.evaluation.embeddings). A rule's threshold is
the one with the best mean of pairwise and BCubed F on the images of View 1's pair lists
(pairsDevTrain and pairsDevTest: never View 2's), searched on a grid; the rule then groups all
13,233 faces at it. DBSCAN is also run as Immich configures it (a cosine distance of 0.5, i.e.
Euclidean 1.0 between unit vectors, and 3 faces at least). Beside our threshold, the share of View
1's impostor pairs closer than it: what a single look-alike link between two people would be.
Prints a table and writes bench/results/<card>/grouping_lfw.json. For comparison, Otto, Wang and
Jain (TPAMI 2018) report a pairwise F of 0.87 on all of LFW with approximate rank-order clustering.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.machine import write_report
from model.evaluation.grouping_calibration import choose, embed_all_lfw, link_far, person, view1_rows
from model.paths import DEFAULT_DATA_DIR, DEFAULT_ENCODER_DIR, REPORTS_DIR
from model.verify.grouping import RULES, dbscan, scores

IMMICH_DBSCAN = {"threshold": 1.0, "min_samples": 3}  # maxDistance 0.5 (cosine), minFaces 3
OTTO_PAIRWISE_F = 0.87


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_ENCODER_DIR)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    from model.verify.pipeline import FaceVerifier  # the networks load here, not on import

    verifier = FaceVerifier.from_folders(args.weights)
    embedded = embed_all_lfw(verifier, args.data)
    embeddings = embedded.normalised(flip_tta=verifier.flip_tta)
    truth = np.unique([person(path) for path in embedded.paths], return_inverse=True)[1]
    development = view1_rows(embedded, args.data)

    report: dict = {"faces": len(embedded.paths), "people": int(truth.max() + 1), "rules": {}}
    print(f"{len(embedded.paths)} faces of {report['people']} people; thresholds chosen on {len(development)} "
          f"View 1 images")
    for rule in RULES:
        threshold, on_view1 = choose(rule, embeddings[development], truth[development])
        started = time.perf_counter()
        result = scores(RULES[rule](embeddings, threshold), truth)
        report["rules"][rule] = {"threshold": threshold, "view1": on_view1, "all_lfw": result,
                                 "seconds": round(time.perf_counter() - started, 1)}
    immich = scores(dbscan(embeddings, IMMICH_DBSCAN["threshold"], IMMICH_DBSCAN["min_samples"]), truth)
    report["rules"]["dbscan_as_immich"] = {**IMMICH_DBSCAN, "all_lfw": immich}

    ours = report["rules"]["average_linkage"]["threshold"]
    report["average_linkage_link_far"] = link_far(embeddings[development], truth[development], ours)
    report["otto_et_al_pairwise_f"] = OTTO_PAIRWISE_F

    print(f"{'rule':<22} {'thr':>5} {'pair P':>7} {'pair R':>7} {'pair F':>7} {'B3 P':>7} {'B3 R':>7} "
          f"{'B3 F':>7} {'groups':>7}")
    for rule, entry in report["rules"].items():
        r = entry["all_lfw"]
        print(f"{rule:<22} {entry['threshold']:>5.2f} {r['pairwise_precision']:>7.4f} {r['pairwise_recall']:>7.4f} "
              f"{r['pairwise_f']:>7.4f} {r['bcubed_precision']:>7.4f} {r['bcubed_recall']:>7.4f} "
              f"{r['bcubed_f']:>7.4f} {r['groups']:>7}")
    print(f"average linkage's threshold {ours:.2f}: {report['average_linkage_link_far']:.2e} of View 1's impostor "
          f"pairs are closer; Otto et al. (TPAMI 2018): pairwise F {OTTO_PAIRWISE_F} on all of LFW")
    write_report(REPORTS_DIR / verifier.card.name / "grouping_lfw.json",
                 {"what": __doc__.splitlines()[0], "model": verifier.card.name, **report})


if __name__ == "__main__":
    main()
