"""Open-set 1:N identification on LFW, in the NIST FRTE style: FNIR at FPIR 1e-2 and 1e-3 and rank-1
accuracy, for galleries of several sizes, with the thresholds model.verify.open_set derives from the
subject-level false-accept curves (chosen on the "choose" half of LFW's identities).

Galleries: the first N (by sha256 of the name) of LFW's identities with two or more images, each
enrolled with one image (drawn at random, seeded by the name). Mated probes: their other images (at
most 20 each). Non-mated probes: every image of the held-out half's identities that are not in the
gallery (none of them helped choose a threshold). FNIR: a mated probe whose own subject is not the
best candidate at or below the threshold; FPIR: a non-mated probe with any candidate at or below it.
Beside each rule threshold, the one that would give the target FPIR on these very non-mated probes.

    facever calibrate-search --weights weights/fused-dlib-sface-yunet-int8
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np

from model.card import SearchCalibration, tta_mode, write_card
from model.evaluation.arguments import calibration_parser, command_line
from model.evaluation.embeddings import embed_lfw
from model.evaluation.protocols import MAX_IMAGES_PER_IDENTITY, split_identities
from model.evaluation.subject_calibration import name_seed
from model.verify.open_set import search_threshold
from model.verify.subject_scores import subject_scores

TARGETS = {"fpir_1e-2": 1e-2, "fpir_1e-3": 1e-3}
DEFAULT = "fpir_1e-3"
SIZES = (100, 1000, None)  # None: every identity with two or more images


def _by_identity(paths: list[str]) -> dict[str, list[int]]:
    identities: dict[str, list[int]] = {}
    for index, path in enumerate(paths):
        identities.setdefault(path.split("/")[0], []).append(index)
    return identities


def open_set(embeddings: np.ndarray, paths: list[str], calibration, size: int | None) -> dict:
    identities = _by_identity(paths)
    _, held_out = split_identities(paths)
    enrollable = sorted((name for name, rows in identities.items() if len(rows) >= 2),
                        key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    gallery = enrollable[:size] if size else enrollable
    enrolled, mated, mate = [], [], []
    for index, name in enumerate(gallery):
        order = np.random.default_rng(name_seed(name)).permutation(identities[name])
        enrolled.append(order[0])
        probes = list(order[1:MAX_IMAGES_PER_IDENTITY + 1])
        mated += probes
        mate += [index] * len(probes)
    in_gallery = set(gallery)
    non_mated = [row for name, rows in held_out.items() if name not in in_gallery for row in rows]
    templates = embeddings[np.array(enrolled)][:, None, :]  # (N, 1, D): one template each
    mated_scores = subject_scores("centroid", embeddings[np.array(mated)], templates)
    non_mated_best = subject_scores("centroid", embeddings[np.array(non_mated)], templates).min(axis=1)
    best = mated_scores.argmin(axis=1)
    best_score = mated_scores.min(axis=1)
    rank1 = best == np.array(mate)
    rows = {}
    for name, fpir in TARGETS.items():
        threshold, extrapolated = search_threshold(calibration, 1, fpir, len(gallery))
        allowed = int(np.floor(fpir * len(non_mated)))
        empirical = float(np.sort(non_mated_best)[allowed - 1]) if allowed else None
        rows[name] = {
            "threshold": threshold, "extrapolated": extrapolated,
            "fpir": float(np.mean(non_mated_best <= threshold)),
            "fnir": float(np.mean(~(rank1 & (best_score <= threshold)))),
            "threshold_for_target_fpir_measured_here": empirical,
        }
    return {"gallery_size": len(gallery), "mated_probes": len(mated), "non_mated_probes": len(non_mated),
            "rank1": float(rank1.mean()), "targets": rows}


def calibrate_search(weights: Path, data_dir: Path, reports_dir: Path, command: str, threads: int = 2) -> dict:
    from model.verify.pipeline import FaceVerifier  # the networks load here, not on import

    verifier = FaceVerifier.from_folders(weights, threads=threads)
    embeddings = embed_lfw(verifier, data_dir)
    modes = {}
    for flip_tta in (False, True):
        calibration = verifier.card.subjects_for(flip_tta)
        if calibration is None or not calibration.far_curves:
            raise SystemExit("the card has no subject-level false-accept curves: run facever calibrate-subjects first")
        normalised = embeddings.normalised(flip_tta)
        modes[tta_mode(flip_tta)] = {
            "default": DEFAULT, "targets": TARGETS,
            "rule": "per-subject FAR = 1 - (1 - FPIR)^(1/N), the threshold read off the subject-level FAR curve "
                    "of the subject's number of templates",
            "measured": [open_set(normalised, embeddings.paths, calibration, size) for size in SIZES],
            "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
            "command": command, "date": dt.date.today().isoformat(),
        }
    card = verifier.card
    write_card(card.updated(search={mode: SearchCalibration.model_validate(m) for mode, m in modes.items()}))
    out = reports_dir / card.name / "search_calibration.json"
    out.write_text(json.dumps(modes, indent=2) + "\n")
    return modes


def print_table(modes: dict) -> None:
    for mode, result in modes.items():
        print(f"\n{mode}")
        print(f"{'gallery':>7} {'mated':>6} {'non-mated':>9} {'rank-1':>7} "
              + " ".join(f"{name + ' thr':>15} {'FPIR':>8} {'FNIR':>7} {'thr measured':>12}" for name in TARGETS))
        for row in result["measured"]:
            cells = []
            for name in TARGETS:
                t = row["targets"][name]
                measured = t["threshold_for_target_fpir_measured_here"]
                cells.append(f"{t['threshold']:>15.4f} {t['fpir']:>8.2e} {t['fnir']:>7.2%} "
                             f"{measured if measured is None else round(measured, 4)!s:>12}")
            print(f"{row['gallery_size']:>7} {row['mated_probes']:>6} {row['non_mated_probes']:>9} {row['rank1']:>7.2%} "
                  + " ".join(cells))


def main(argv: list[str] | None = None) -> None:
    parser = calibration_parser("facever calibrate-search", __doc__)
    args = parser.parse_args(argv)
    command = command_line("facever calibrate-search", argv)
    print_table(calibrate_search(args.weights, args.data, args.reports, command, args.threads))


if __name__ == "__main__":
    main()
