"""Error-versus-discard characteristic of the face-quality score on LFW View 2, clean and degraded.

ISO/IEC 29794-1's EDC: the false non-match rate of the genuine comparisons at the card's far_1e-3
threshold, as the lowest-quality comparisons are discarded (a pair's quality: the lower of its two
faces'), beside random discard and the detector's confidence alone. "Degraded" is View 2 with each
pair's second photo degraded by one kind of model.evaluation.degrade (drawn per pair, seeded): the
quality model was fitted on View 1 only (model.evaluation.quality). A photo in which no face is
found counts as a false non-match of quality 0, for every ordering but the random one.

    python -m bench.quality_edc        -> bench/results/quality_edc.json, bench/results/quality_edc.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.machine import write_report
from model.distance import pair_distances
from model.evaluation.calibrate import DEFAULT_OPERATING_POINT
from model.evaluation.degrade import KINDS, degrade
from model.evaluation.protocols import read_pairs
from model.evaluation.quality import embed_and_measure
from model.faces.quality import assess
from model.paths import DEFAULT_DATA_DIR, DEFAULT_ENCODER_DIR, REPORTS_DIR

FRACTIONS = np.round(np.arange(0.0, 0.301, 0.01), 2)
PARTIAL_TO = 0.2  # the partial area is taken over 0..20% discarded
RANDOM_REPEATS = 200


def edc(failed: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """FNMR of the genuine comparisons kept after discarding each FRACTIONS share of the lowest quality."""
    order = np.argsort(quality, kind="stable")
    kept = [order[int(round(fraction * len(order))):] for fraction in FRACTIONS]
    return np.array([failed[rows].mean() for rows in kept])


def random_edc(failed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.mean([edc(failed, rng.random(len(failed))) for _ in range(RANDOM_REPEATS)], axis=0)


def summary(curve: np.ndarray) -> dict:
    within = FRACTIONS <= PARTIAL_TO + 1e-9
    return {"fnmr_at_0": float(curve[0]), "fnmr_at_5%": float(curve[FRACTIONS == 0.05][0]),
            "fnmr_at_10%": float(curve[FRACTIONS == 0.10][0]),
            "partial_area_0_20%": float(np.trapezoid(curve[within], FRACTIONS[within]))}


def run(weights: Path, data_dir: Path) -> dict:
    from model.verify.pipeline import FaceVerifier

    verifier = FaceVerifier.from_folders(weights)
    threshold = verifier.calibration.operating_points[DEFAULT_OPERATING_POINT].threshold
    images_dir = data_dir / "lfw" / "images"
    genuine = [pair for pair in read_pairs(data_dir / "lfw" / "pairs.txt") if pair.same]
    firsts = embed_and_measure(verifier, [Image.open(images_dir / p.first).convert("RGB") for p in genuine])
    sets = {"clean": [Image.open(images_dir / p.second).convert("RGB") for p in genuine]}
    sets["degraded"] = [degrade(photo, KINDS[index % len(KINDS)], np.random.default_rng([2, index]))
                        for index, photo in enumerate(sets["clean"])]
    rng = np.random.default_rng(0)
    report = {"threshold": {DEFAULT_OPERATING_POINT: threshold}, "fractions": FRACTIONS.tolist(), "sets": {}}
    quality_ms = []
    stages: dict[str, float] = {}
    for name, photos in sets.items():
        started = time.perf_counter()
        seconds = embed_and_measure(verifier, photos, stages)
        failed, quality, confidence, kinds = [], [], [], []
        for index, (first, second) in enumerate(zip(firsts, seconds)):
            kinds.append("clean" if name == "clean" else KINDS[index % len(KINDS)])
            if first is None or second is None:
                failed.append(True)
                quality.append(0.0)
                confidence.append(0.0)
                continue
            distance = float(pair_distances(first[0][None], second[0][None])[0])
            failed.append(distance > threshold)
            measured = time.perf_counter()
            scores = [assess(face[1], verifier.card.quality).score for face in (first, second)]
            quality_ms.append((time.perf_counter() - measured) * 1000 / 2)
            quality.append(min(scores))
            confidence.append(min(first[1].detection_score, second[1].detection_score))
        failed_array = np.array(failed)
        curves = {"quality": edc(failed_array, np.array(quality)),
                  "detector confidence": edc(failed_array, np.array(confidence)),
                  "random": random_edc(failed_array, rng)}
        report["sets"][name] = {
            "genuine_pairs": len(failed), "no_face": int(sum(s is None for s in seconds)),
            "seconds": round(time.perf_counter() - started, 1),
            "curves": {key: curve.tolist() for key, curve in curves.items()},
            "summary": {key: summary(curve) for key, curve in curves.items()},
            "fnmr_by_kind": {kind: float(np.mean([f for f, k in zip(failed, kinds) if k == kind]))
                             for kind in sorted(set(kinds))},
        }
    faces = stages.pop("faces")
    report["ms_per_face"] = {stage: round(ms / faces, 4) for stage, ms in stages.items()}
    report["ms_per_face"]["quality assess (median)"] = round(float(np.median(quality_ms)), 4)
    return report


def plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = np.array(report["fractions"]) * 100
    figure, axes = plt.subplots(1, len(report["sets"]), figsize=(10, 4), sharey=False)
    for axis, (name, result) in zip(np.atleast_1d(axes), report["sets"].items()):
        for key, style in (("quality", "-"), ("detector confidence", "--"), ("random", ":")):
            axis.plot(fractions, np.array(result["curves"][key]) * 100, style, label=key)
        axis.set_title(f"LFW View 2, {name} ({result['genuine_pairs']:,} genuine pairs)")
        axis.set_xlabel("comparisons discarded (%)")
        axis.set_ylabel(f"FNMR at {DEFAULT_OPERATING_POINT} (%)")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_ENCODER_DIR)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=REPORTS_DIR / "quality_edc.json")
    args = parser.parse_args(argv)
    report = run(args.weights, args.data)
    write_report(args.out, report, threads=2)
    plot(report, args.out.with_suffix(".png"))
    for name, result in report["sets"].items():
        print(f"\n{name}: {result['genuine_pairs']} genuine pairs, {result['no_face']} without a face found")
        print(f"{'ordering':<22} {'FNMR':>7} {'at 5%':>7} {'at 10%':>7} {'pAUC 0-20%':>11}")
        for key, row in result["summary"].items():
            print(f"{key:<22} {row['fnmr_at_0']:>7.2%} {row['fnmr_at_5%']:>7.2%} {row['fnmr_at_10%']:>7.2%} "
                  f"{row['partial_area_0_20%']:>11.5f}")
    print("\nms per face, batches of 16:", ", ".join(f"{k} {v:.3f}" for k, v in report["ms_per_face"].items()))


if __name__ == "__main__":
    main()
