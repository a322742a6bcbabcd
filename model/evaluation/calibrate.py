"""Calibrate operating points on one set of identities; measure their error rates on another.

LFW's 5,749 identities are split in two by a hash of the name. On the "choose" half every genuine
pair (within an identity) and every impostor pair (across identities) is scored, and the thresholds
are picked: best balanced accuracy, FAR 1e-2, 1e-3 and 1e-4. Their false-accept and false-reject
rates are then measured on the disjoint "held-out" half, again over all pairs, so FAR 1e-4 rests on
millions of impostor pairs. A logistic map distance -> p(same) (equal priors) is fitted on the same
"choose" half. Everything is written into the card, per inference mode (plain, flip TTA).

    facever calibrate --weights weights/fused-dlib-sface-yunet
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from model.card import Calibration, tta_mode, write_card
from model.engines.cpu import describe_cpu, isa_caps, isa_suffix
from model.evaluation import metrics
from model.evaluation.arguments import calibration_parser, command_line
from model.evaluation.embeddings import embed_lfw
from model.evaluation.protocols import MAX_IMAGES_PER_IDENTITY, PairDistances, all_pair_distances, split_identities
from model.verify.pipeline import FaceVerifier

TARGET_FARS = {"far_1e-2": 1e-2, "far_1e-3": 1e-3, "far_1e-4": 1e-4}
DEFAULT_OPERATING_POINT = "far_1e-3"


def fit_logistic(pairs: PairDistances, impostor_sample: int = 500_000) -> tuple[float, float]:
    """Fit p(same) = sigmoid(a * d + b) with equal class weights (Newton's method)."""
    rng = np.random.default_rng(0)
    impostor = pairs.impostor
    if impostor.size > impostor_sample:
        impostor = rng.choice(impostor, impostor_sample, replace=False)
    d = np.concatenate([pairs.genuine, impostor]).astype(np.float64)
    y = np.concatenate([np.ones(pairs.genuine.size), np.zeros(impostor.size)])
    w = np.where(y == 1, 0.5 / pairs.genuine.size, 0.5 / impostor.size)
    features = np.stack([d, np.ones_like(d)], axis=1)
    params = np.array([-10.0, 5.0])
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(features @ params, -50, 50)))
        gradient = features.T @ (w * (p - y))
        hessian = features.T @ (features * (w * p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        params -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(params[0]), float(params[1])


def calibrate_mode(choose: PairDistances, held_out: PairDistances) -> dict:
    distances, is_same = choose.all
    thresholds = {"best_accuracy": metrics.best_accuracy_threshold(distances, is_same)}
    thresholds.update({name: metrics.threshold_at_far(choose.impostor, far) for name, far in TARGET_FARS.items()})
    descriptions = {
        "best_accuracy": "maximises (TAR + TNR) / 2: equal cost for false accepts and false rejects",
        "far_1e-2": "at most 1 false accept in 100 impostor pairs",
        "far_1e-3": "at most 1 false accept in 1,000 impostor pairs",
        "far_1e-4": "at most 1 false accept in 10,000 impostor pairs",
    }
    a, b = fit_logistic(choose)
    return {
        "default": DEFAULT_OPERATING_POINT,
        "operating_points": {
            name: {
                "threshold": threshold,
                "description": descriptions[name],
                "chosen_on": choose.rates(threshold),
                "held_out": held_out.rates(threshold),
            }
            for name, threshold in thresholds.items()
        },
        "probability": {"a": a, "b": b, "form": "p(same) = 1 / (1 + exp(-(a * distance + b))), equal priors"},
    }


def calibrate(weights: Path, data_dir: Path, reports_dir: Path, command: str, threads: int = 2) -> dict:
    """The operating points chosen and measured, written into the card and its report. Refused under
    an ISA cap, as `facever evaluate --update-card` is: the card's figures are those of an uncapped
    CPU (`check` measures them again under one)."""
    if isa_caps():
        raise SystemExit("calibration writes into the card, which holds an uncapped CPU's figures; ISA caps are set "
                         f"({', '.join(f'{name}={value}' for name, value in isa_caps().items())}): "
                         "unset them, or measure the card's operating points under the cap with --check")
    verifier = FaceVerifier.from_folders(weights, threads=threads)
    if verifier.precision != verifier.card.precision:
        raise SystemExit(f"calibration must run in the card's precision ({verifier.card.precision}), "
                         "which this CPU does not compute natively")
    embeddings = embed_lfw(verifier, data_dir)
    choose_ids, held_out_ids = split_identities(embeddings.paths)
    report = provenance(verifier.precision, verifier.engine, command)
    modes = {}
    for flip_tta in (False, True):
        normalised = embeddings.normalised(flip_tta)
        choose = all_pair_distances(normalised, choose_ids)
        held_out = all_pair_distances(normalised, held_out_ids)
        modes[tta_mode(flip_tta)] = {
            **calibrate_mode(choose, held_out),
            "pairs": {
                "choose": {"identities": len(choose_ids), "genuine": int(choose.genuine.size),
                           "impostor": int(choose.impostor.size)},
                "held_out": {"identities": len(held_out_ids), "genuine": int(held_out.genuine.size),
                             "impostor": int(held_out.impostor.size)},
            },
            **report,
        }
    card = verifier.card
    calibration = {**(card.calibration or {}), **{mode: Calibration.model_validate(m) for mode, m in modes.items()}}
    write_card(card.updated(calibration=calibration))
    out_dir = reports_dir / verifier.card.name
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.json").write_text(json.dumps(modes, indent=2) + "\n")
    return modes


def provenance(precision: str, engine: str, command: str) -> dict[str, Any]:
    """How a calibration was made, as the card records it beside its operating points."""
    return {
        "protocol": (
            "LFW identities split in two by sha256(name); at most "
            f"{MAX_IMAGES_PER_IDENTITY} images per identity; thresholds chosen on all pairs of the "
            "'choose' half, error rates measured on all pairs of the disjoint 'held-out' half"
        ),
        "precision": precision,
        "engine": engine,
        "cpu": describe_cpu(),
        "command": command,
        "date": dt.date.today().isoformat(),
    }


def check(weights: Path, data_dir: Path, reports_dir: Path, command: str, threads: int = 2) -> dict:
    """The card's operating points measured again on the held-out half, in the numerics of this
    run (e.g. on a CPU held to AVX2, whose int8 kernels round differently): their thresholds as
    the card has them, nothing chosen and nothing written into the card. Written to
    calibration_check[_<cpu kind>].json (e.g. _avx2, see isa_suffix) beside the card's calibration.json."""
    verifier = FaceVerifier.from_folders(weights, threads=threads)
    embeddings = embed_lfw(verifier, data_dir)
    _, held_out_ids = split_identities(embeddings.paths)
    report: dict = {"what": "the card's thresholds, error rates measured on the held-out half in this run's numerics",
                    "precision": verifier.precision, "engine": verifier.engine, "cpu": describe_cpu(),
                    "command": command, "date": dt.date.today().isoformat(), "modes": {}}
    for mode, calibration in (verifier.card.calibration or {}).items():
        held_out = all_pair_distances(embeddings.normalised(mode == "flip"), held_out_ids)
        report["modes"][mode] = {
            name: {"threshold": point.threshold, "card": point.held_out.model_dump(), "measured": held_out.rates(point.threshold)}
            for name, point in calibration.operating_points.items()
        }
    out = reports_dir / verifier.card.name / f"calibration_check{isa_suffix()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def print_check(report: dict) -> None:
    print(f"{report['engine']} {report['precision']} on {report['cpu']['model']} "
          f"({', '.join(report['cpu']['isa'])}; caps {report['cpu']['isa_caps'] or 'none'})")
    print(f"{'mode':<6} {'operating point':<15} {'threshold':>9} {'FAR card':>10} {'FAR now':>10} {'FRR card':>9} {'FRR now':>9}")
    for mode, points in report["modes"].items():
        for name, point in points.items():
            card, now = point["card"], point["measured"]
            print(f"{mode:<6} {name:<15} {point['threshold']:>9.4f} {card['far']:>10.2e} {now['far']:>10.2e} "
                  f"{card['frr']:>9.2%} {now['frr']:>9.2%}")


def print_table(modes: dict) -> None:
    for mode, calibration in modes.items():
        pairs = calibration["pairs"]
        print(f"\n{mode}: chosen on {pairs['choose']['genuine']:,} genuine / {pairs['choose']['impostor']:,} "
              f"impostor pairs; held out {pairs['held_out']['genuine']:,} / {pairs['held_out']['impostor']:,}")
        print(f"{'operating point':<15} {'threshold':>9} {'FAR held-out':>13} {'FRR held-out':>13}")
        for name, point in calibration["operating_points"].items():
            held = point["held_out"]
            print(f"{name:<15} {point['threshold']:>9.4f} {held['far']:>13.2e} {held['frr']:>13.2%}")


def main(argv: list[str] | None = None) -> None:
    parser = calibration_parser("facever calibrate", __doc__)
    parser.add_argument("--check", action="store_true",
                        help="measure the card's operating points again in this run's numerics; write nothing into it")
    args = parser.parse_args(argv)
    command = command_line("facever calibrate", argv)
    if args.check:
        print_check(check(args.weights, args.data, args.reports, command, args.threads))
    else:
        print_table(calibrate(args.weights, args.data, args.reports, command, args.threads))


if __name__ == "__main__":
    main()
