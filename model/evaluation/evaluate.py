"""LFW View 2, end to end from the raw images through our own detection, alignment and encoder.

Protocol: 10 folds of 300 same + 300 different pairs; for each fold the threshold is chosen on the
other nine and accuracy measured on it; mean and standard deviation over folds. Over all 6,000
pairs: ROC AUC, EER and TAR at FAR 1e-3 and 1e-2. Both inference modes (plain, flip TTA) are scored.

    facever evaluate --weights weights/fused-dlib-sface-yunet --update-card
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path

import numpy as np

from model.card import tta_mode, write_card
from model.engines.cpu import describe_cpu, isa_caps, isa_suffix
from model.evaluation import metrics
from model.evaluation.embeddings import embed_lfw
from model.evaluation.protocols import protocol_distances, read_pairs, score_view2
from model.paths import DEFAULT_DATA_DIR, DEFAULT_ENCODER_DIR, REPORTS_DIR
from model.types import ENGINE_NAMES, PRECISION_NAMES
from model.verify.pipeline import FaceVerifier


def plot_results(results: dict, distances: dict, is_same: np.ndarray, out_dir: Path, title: str) -> None:
    """A ROC plot (log FAR) and a distance histogram per mode, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 5))
    for mode, d in distances.items():
        far, tar, _ = metrics.roc_curve(d, is_same)
        r = results[mode]
        axis.plot(far[1:], tar[1:], label=f"{mode}: acc {r['accuracy_mean']:.2%}, AUC {r['auc']:.4f}")
    axis.set_xscale("log")
    axis.set_xlim(1e-4, 1)
    axis.set_ylim(0.8, 1.0)
    axis.set_xlabel("false accept rate")
    axis.set_ylabel("true accept rate")
    axis.set_title(f"{title}: LFW View 2 ROC (6,000 pairs)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(out_dir / "lfw_view2_roc.png", dpi=120)
    plt.close(figure)

    figure, axes = plt.subplots(1, len(distances), figsize=(6 * len(distances), 4), squeeze=False)
    for axis, (mode, d) in zip(axes[0], distances.items()):
        bins = np.linspace(0, d.max() * 1.05, 80)
        axis.hist(d[is_same], bins=bins, alpha=0.6, label="same person")
        axis.hist(d[~is_same], bins=bins, alpha=0.6, label="different people")
        axis.axvline(np.mean(results[mode]["fold_thresholds"]), color="k", ls="--", label="threshold")
        axis.set_xlabel("distance between L2-normalised embeddings")
        axis.set_title(f"{title} ({mode})")
        axis.legend()
    figure.tight_layout()
    figure.savefig(out_dir / "lfw_view2_distances.png", dpi=120)
    plt.close(figure)


def evaluate(
    weights: Path, data_dir: Path, reports_dir: Path, update: bool, command: str, precision: str | None = None,
    engine: str | None = None, threads: int = 2,
) -> dict:
    """`precision` and `engine` None are the card's own; others are measured for comparison only,
    never written into the card, whose figures must be those of the numerics it is served in.
    `threads`: each inference's (see FaceVerifier.from_folders)."""
    verifier = FaceVerifier.from_folders(weights, precision=precision, engine=engine, threads=threads)
    card = verifier.card
    own_precision = (verifier.precision, verifier.engine) == (card.precision, card.inference.engine)
    if update and (not own_precision or isa_caps()):
        raise SystemExit(f"--update-card needs the card's own precision and engine ({card.precision}, "
                         f"{card.inference.engine}) on an uncapped CPU")
    embeddings = embed_lfw(verifier, data_dir)
    pairs = read_pairs(data_dir / "lfw" / "pairs.txt")
    is_same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    index = embeddings.index()
    pair_images = {index[p.first] for p in pairs} | {index[p.second] for p in pairs}

    distances, results = {}, {}
    for flip_tta in (False, True):
        mode = tta_mode(flip_tta)
        distances[mode] = protocol_distances(embeddings.normalised(flip_tta), index, pairs)
        results[mode] = score_view2(distances[mode], is_same, folds)

    report = {
        "model": verifier.card.name,
        "protocol": "LFW View 2 (pairs.txt), 10 folds, threshold chosen on 9 folds, accuracy on the 10th; "
        "AUC, EER and TAR@FAR over all 6,000 pairs; distance: Euclidean between L2-normalised embeddings",
        "detector": verifier.detector.settings,
        "pipeline": f"raw LFW deep-funneled JPEGs -> {verifier.card.detector} (the face nearest the centre: LFW's subject) -> 5-point similarity alignment "
        "to the card's template -> encoder",
        "precision": verifier.precision,
        "engine": verifier.engine,
        "images_in_pairs": len(pair_images),
        "images_without_detected_face": int(sum(not embeddings.detected[i] for i in pair_images)),
        "results": results,
        "command": command,
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {threads} threads",
        "cpu": describe_cpu(),
    }
    out_dir = reports_dir / verifier.card.name
    out_dir.mkdir(parents=True, exist_ok=True)
    caps = isa_suffix()
    suffix = ("" if own_precision else f"_{verifier.engine}_{verifier.precision}") + caps
    (out_dir / f"lfw_view2{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    if own_precision and not caps:
        plot_results(results, distances, is_same, out_dir, verifier.card.name)

    if update:
        summary = {key: value for key, value in report.items() if key != "results"}
        summary["results"] = {
            mode: {k: v for k, v in r.items() if not k.startswith("fold_")} for mode, r in results.items()
        }
        card = verifier.card
        write_card(card.updated(evaluation={**(card.evaluation or {}), "lfw_view2": summary}))
    return report


def print_table(report: dict) -> None:
    print(f"{report['model']} ({report['engine']}, {report['precision']}): LFW View 2, {report['images_without_detected_face']} of "
          f"{report['images_in_pairs']} pair images without a detected face")
    print(f"{'mode':<6} {'accuracy':>16} {'AUC':>8} {'EER':>7} {'TAR@1e-3':>9} {'TAR@1e-2':>9}")
    for mode, r in report["results"].items():
        print(
            f"{mode:<6} {r['accuracy_mean']:>9.2%} ± {r['accuracy_std']:.2%} {r['auc']:>8.5f} "
            f"{r['eer']:>7.2%} {r['tar_at_far_1e-3']:>9.2%} {r['tar_at_far_1e-2']:>9.2%}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="facever evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_ENCODER_DIR, help="encoder weights folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="folder holding lfw/")
    parser.add_argument("--reports", type=Path, default=REPORTS_DIR, help="where JSON and PNGs go")
    parser.add_argument("--update-card", action="store_true", help="write the results into model.json")
    parser.add_argument("--threads", type=int, default=2, help="each inference's threads")
    parser.add_argument("--precision", choices=PRECISION_NAMES, help="default: the card's own")
    parser.add_argument("--engine", choices=ENGINE_NAMES, help="default: the card's own")
    args = parser.parse_args(argv)
    command = "facever evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
    report = evaluate(args.weights, args.data, args.reports, args.update_card, command.strip(), args.precision,
                      args.engine, args.threads)
    print_table(report)


if __name__ == "__main__":
    main()
