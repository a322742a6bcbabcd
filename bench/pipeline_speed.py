"""End-to-end verification speed without HTTP: decode -> detect -> align -> embed -> compare.

Real LFW pairs (250x250 JPEGs, fold 1 of pairs.txt) through FaceVerifier.verify, plain and with flip
TTA, 2 torch threads, after warm-up. Prints median and p90 ms per /verify-equivalent call (two
images) and writes bench/results/pipeline_speed_<model>[_<cap>].json.

    python -m bench.pipeline_speed [--weights DIR] [--pairs 40] [--cap avx2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.machine import add_cap_argument, apply_cap, write_report
from model.card import tta_mode
from model.engines.cpu import isa_suffix
from model.evaluation.protocols import read_pairs
from model.images import decode_image
from model.paths import DEFAULT_DATA_DIR, DEFAULT_ENCODER_DIR, REPORTS_DIR
from model.verify.pipeline import FaceVerifier

THREADS = 2


def time_verify(verifier: FaceVerifier, pairs: list[tuple[bytes, bytes]]) -> tuple[list[float], dict[str, float]]:
    """Milliseconds per pair, decoding included, as the service does per request; and the median
    milliseconds of each pipeline stage per pair."""
    timings, stages = [], {}
    decision = verifier.decision(threshold=1.0)
    for first, second in pairs:
        start = time.perf_counter()
        result = verifier.verify(decode_image(first), decode_image(second), decision)
        timings.append((time.perf_counter() - start) * 1000)
        for stage, ms in result.timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    return timings, {stage: round(statistics.median(ms), 2) for stage, ms in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_ENCODER_DIR)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--pairs", type=int, default=40)
    add_cap_argument(parser)
    args = parser.parse_args()
    apply_cap(args, "bench.pipeline_speed")
    torch.set_num_threads(THREADS)

    images = args.data / "lfw" / "images"
    protocol = read_pairs(args.data / "lfw" / "pairs.txt")[: args.pairs]
    pairs = [((images / p.first).read_bytes(), (images / p.second).read_bytes()) for p in protocol]
    results, name, detector, precision, engine = {}, "", {}, "", ""
    for flip_tta in (False, True):
        verifier = FaceVerifier.from_folders(args.weights, flip_tta=flip_tta, threads=THREADS)
        verifier.warm_up()
        name, detector, precision, engine = (verifier.card.name, verifier.detector.settings, verifier.precision,
                                             verifier.engine)
        time_verify(verifier, pairs[:5])
        timings, stages = time_verify(verifier, pairs)
        results[tta_mode(flip_tta)] = {
            "median_ms_per_stage_per_verify": stages,
            "median_ms_per_verify": round(statistics.median(timings), 2),
            "p90_ms_per_verify": round(float(np.percentile(timings, 90)), 2),
            "median_ms_per_image": round(statistics.median(timings) / 2, 2),
        }
    print(f"{name}: {engine}, {precision}")
    print(f"{'mode':<6} {'ms/verify (median)':>19} {'p90':>7} {'ms/image':>9}")
    for mode, r in results.items():
        stages = ", ".join(f"{stage} {ms}" for stage, ms in r["median_ms_per_stage_per_verify"].items())
        print(f"{mode:<6} {r['median_ms_per_verify']:>19.2f} {r['p90_ms_per_verify']:>7.2f} "
              f"{r['median_ms_per_image']:>9.2f}   per verify: {stages}")
    report = {
        "model": name,
        "what": "FaceVerifier.verify on two 250x250 LFW JPEGs, decoding included, no HTTP",
        "pairs": len(pairs),
        "detector": detector,
        "engine": engine,
        "precision": precision,
        "results": results,
    }
    write_report(REPORTS_DIR / f"pipeline_speed_{name}{isa_suffix()}.json", report, threads=THREADS)


if __name__ == "__main__":
    main()
