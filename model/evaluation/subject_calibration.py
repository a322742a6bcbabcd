"""Calibrate the subject-level decision: a probe against a subject enrolled with k templates.

LFW's identities are split in two by a hash of the name, as for the 1:1 operating points
(model.evaluation.calibrate). In each half, every identity with more than k images becomes a subject
enrolled with k of them (drawn at random, seeded by the name); its other images are its genuine
probes, and every image of every other identity of the same half is an impostor probe against it.
The rule (model.verify.subject_scores.RULES) is chosen on the "choose" half by its TAR at FAR 1e-3 over
k >= 2, the thresholds per k are chosen there too, and their error rates are measured on the disjoint
"held-out" half. Beside them, the 1:1 far_1e-3 threshold applied to the nearest template shows what
the naive rule does to false accepts. Written into the card, per inference mode.

    facever calibrate-subjects --weights weights/fused-dlib-sface-yunet-int8
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np

from model.card import SubjectCalibration, tta_mode, write_card
from model.engines.cpu import describe_cpu, isa_caps
from model.evaluation import metrics
from model.evaluation.arguments import calibration_parser, command_line
from model.evaluation.calibrate import DEFAULT_OPERATING_POINT, TARGET_FARS
from model.evaluation.embeddings import embed_lfw
from model.evaluation.protocols import MAX_IMAGES_PER_IDENTITY, PairDistances, split_identities
from model.verify.subject_scores import RULES, subject_scores

K_VALUES = (1, 2, 3, 4, 5)
# The false-accept rates at which each k's threshold is tabled, for the 1:N search's thresholds
# (model.verify.open_set): down to where at least MIN_EVENTS impostor probes are accepted.
CURVE_FARS = np.logspace(-1, -7, 25)
MIN_EVENTS = 5
DESCRIPTIONS = {name: f"at most 1 false accept in {round(1 / far):,} impostor probes against a subject"
                for name, far in TARGET_FARS.items()}


def name_seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def subject_trials(embeddings: np.ndarray, identities: dict[str, list[int]], k: int) -> dict[str, PairDistances]:
    """Per rule, the genuine and impostor scores of every subject of k templates that the
    identities' images allow (see the module's docstring)."""
    subjects, templates, genuine_rows, genuine_subject = [], [], [], []
    for name, rows in identities.items():
        if len(rows) <= k:
            continue
        order = np.random.default_rng(name_seed(name)).permutation(rows)
        templates.append(embeddings[order[:k]])
        genuine_rows += list(order[k:])
        genuine_subject += [len(subjects)] * (len(order) - k)
        subjects.append(name)
    stacked = np.stack(templates)  # (S, k, D)
    probe_rows = np.concatenate([np.array(rows) for rows in identities.values()])
    probe_owner = np.concatenate([np.full(len(rows), name, dtype=object) for name, rows in identities.items()])
    impostor = probe_owner[:, None] != np.array(subjects, dtype=object)[None, :]  # (P, S)
    trials = {}
    for rule in RULES:
        genuine = np.concatenate([
            subject_scores(rule, embeddings[[row]], stacked[[subject]])[0]
            for row, subject in zip(genuine_rows, genuine_subject)
        ])
        scores = np.concatenate([subject_scores(rule, embeddings[probe_rows[start:start + 512]], stacked)
                                 for start in range(0, len(probe_rows), 512)])
        trials[rule] = PairDistances(genuine.astype(np.float32), scores[impostor].astype(np.float32))
    return trials


def _tar_at(trials: PairDistances, far: float) -> float:
    return float(np.mean(trials.genuine <= metrics.threshold_at_far(trials.impostor, far)))


def calibrate_mode(embeddings: np.ndarray, choose_ids: dict, held_out_ids: dict, one_to_one: float) -> dict:
    """The rule chosen, its thresholds per k, their held-out error rates, and the naive rule's."""
    choose = {k: subject_trials(embeddings, choose_ids, k) for k in K_VALUES}
    held_out = {k: subject_trials(embeddings, held_out_ids, k) for k in K_VALUES}
    compared = {rule: {k: _tar_at(choose[k][rule], 1e-3) for k in K_VALUES} for rule in RULES}
    rule = max(RULES, key=lambda name: np.mean([compared[name][k] for k in K_VALUES if k >= 2]))
    templates, trials, curves = {}, {}, {}
    for k in K_VALUES:
        impostor = choose[k][rule].impostor
        curves[k] = [[float(far), metrics.threshold_at_far(impostor, far)] for far in CURVE_FARS
                     if far * impostor.size >= MIN_EVENTS]
        templates[k] = {}
        for name, far in TARGET_FARS.items():
            threshold = metrics.threshold_at_far(choose[k][rule].impostor, far)
            templates[k][name] = {"threshold": threshold, "description": DESCRIPTIONS[name],
                                  "chosen_on": choose[k][rule].rates(threshold),
                                  "held_out": held_out[k][rule].rates(threshold)}
        trials[k] = {
            "choose": {"subjects": _subjects(choose_ids, k), "genuine": int(choose[k][rule].genuine.size),
                       "impostor": int(choose[k][rule].impostor.size)},
            "held_out": {"subjects": _subjects(held_out_ids, k), "genuine": int(held_out[k][rule].genuine.size),
                         "impostor": int(held_out[k][rule].impostor.size)},
            "one_to_one_far_1e-3_on_nearest": {"threshold": one_to_one,
                                               "held_out": held_out[k]["nearest"].rates(one_to_one)},
        }
    return {
        "rule": rule,
        "default": DEFAULT_OPERATING_POINT,
        "templates": templates,
        "far_curves": curves,
        "rules_compared": {"what": "TAR at FAR 1e-3 on the choose half, per k", **compared},
        "trials": trials,
    }


def _subjects(identities: dict, k: int) -> int:
    return sum(len(rows) > k for rows in identities.values())


def calibrate_subjects(weights: Path, data_dir: Path, reports_dir: Path, command: str, threads: int = 2) -> dict:
    """The subject-level decision chosen and measured, written into the card and its report."""
    from model.verify.pipeline import FaceVerifier  # the networks load here, not on import

    if isa_caps():
        raise SystemExit("calibration writes into the card, which holds an uncapped CPU's figures; unset the ISA caps")
    verifier = FaceVerifier.from_folders(weights, threads=threads)
    if verifier.precision != verifier.card.precision:
        raise SystemExit(f"calibration must run in the card's precision ({verifier.card.precision})")
    embeddings = embed_lfw(verifier, data_dir)
    choose_ids, held_out_ids = split_identities(embeddings.paths)
    report = {
        "protocol": (
            f"LFW identities split in two by sha256(name), at most {MAX_IMAGES_PER_IDENTITY} images each; in each "
            "half a subject per identity with more than k images, enrolled with k drawn at random (seeded by the "
            "name), probed by its other images (genuine) and by every image of the half's other identities "
            "(impostor); rule and thresholds chosen on the 'choose' half, error rates measured on the 'held-out' half"
        ),
        "precision": verifier.precision, "engine": verifier.engine, "command": command,
        "date": dt.date.today().isoformat(),
    }
    modes = {}
    for flip_tta in (False, True):
        one_to_one = verifier.card.calibration_for(flip_tta).operating_points[DEFAULT_OPERATING_POINT].threshold
        result = calibrate_mode(embeddings.normalised(flip_tta), choose_ids, held_out_ids, one_to_one)
        modes[tta_mode(flip_tta)] = {**result, **report}
    card = verifier.card
    write_card(card.updated(subjects={mode: SubjectCalibration.model_validate(m) for mode, m in modes.items()}))
    out = reports_dir / card.name / "subject_calibration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**modes, "cpu": describe_cpu()}, indent=2) + "\n")
    return modes


def print_table(modes: dict) -> None:
    for mode, result in modes.items():
        print(f"\n{mode}: rule {result['rule']!r}; held-out error rates per k templates")
        print(f"{'k':>2} {'subjects':>8} {'genuine':>8} {'impostor':>10} "
              + " ".join(f"{name + ' FAR':>14} {'FRR':>6}" for name in TARGET_FARS)
              + f" {'1:1 far_1e-3 on nearest: FAR':>30} {'FRR':>6}")
        for k, points in result["templates"].items():
            trials = result["trials"][k]
            naive = trials["one_to_one_far_1e-3_on_nearest"]["held_out"]
            print(f"{k:>2} {trials['held_out']['subjects']:>8} {trials['held_out']['genuine']:>8} "
                  f"{trials['held_out']['impostor']:>10,} "
                  + " ".join(f"{p['held_out']['far']:>14.2e} {p['held_out']['frr']:>6.2%}" for p in points.values())
                  + f" {naive['far']:>30.2e} {naive['frr']:>6.2%}")


def main(argv: list[str] | None = None) -> None:
    parser = calibration_parser("facever calibrate-subjects", __doc__)
    args = parser.parse_args(argv)
    command = command_line("facever calibrate-subjects", argv)
    print_table(calibrate_subjects(args.weights, args.data, args.reports, command, args.threads))


if __name__ == "__main__":
    main()
