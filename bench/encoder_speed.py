"""Encoder speed on CPU with 2 threads (the serving setup): batch 1 (one request) and batch 32.

    python -m bench.encoder_speed [--weights DIR] [--precision float32|bfloat16|int8] [--engine torch|openvino]

Prints median milliseconds per batch and per chip (a fused encoder's chip is one per member), and
writes bench/results/encoder_speed.json for dlib-resnet-v1 in float32 on torch, or
bench/results/encoder_speed_<card name>[_<engine>_<precision>].json for any other case (the engine
and precision named unless they are torch and float32).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bench.machine import write_report
from model.card import EncoderCard, load_card
from model.encoders import load_encoder
from model.engines.cpu import isa_line
from model.paths import REPORTS_DIR, WEIGHTS_DIR
from model.types import ENGINE_NAMES, PRECISION_NAMES

DEFAULT_WEIGHTS = WEIGHTS_DIR / "dlib-resnet-v1"
RESULTS = REPORTS_DIR
THREADS = 2
CASES = ((1, 100), (32, 20))  # (batch size, timed runs)
WARMUP_RUNS = 5


def time_batches(encoder: torch.nn.Module, batch: int, runs: int, sizes: list[int]) -> list[float]:
    """Seconds per forward pass over `runs` passes, after a warm-up (allocator, oneDNN kernels);
    one chip batch per template size (a fused encoder takes one per member)."""
    chips = [torch.rand(batch, 3, size, size) * 255 for size in sizes]
    timings = []
    with torch.inference_mode():
        for _ in range(WARMUP_RUNS):
            encoder(*chips)
        for _ in range(runs):
            start = time.perf_counter()
            encoder(*chips)
            timings.append(time.perf_counter() - start)
    return timings


def default_out(card: EncoderCard, precision: str, engine: str) -> Path:
    """The default encoder in float32 keeps its original file; every other case gets its own."""
    suffix = "" if (precision, engine) == ("float32", "torch") else f"_{engine}_{precision}"
    if card.folder.resolve() == DEFAULT_WEIGHTS.resolve() and not suffix:
        return RESULTS / "encoder_speed.json"
    return RESULTS / f"encoder_speed_{card.name}{suffix}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument(
        "--out", type=Path, help="result file (default: by the card's name, as above)"
    )
    parser.add_argument("--precision", choices=PRECISION_NAMES, default="float32")
    parser.add_argument("--engine", choices=ENGINE_NAMES, default="torch")
    args = parser.parse_args(argv)

    torch.set_num_threads(THREADS)
    print(isa_line())
    print(f"{args.weights.name}: engine {args.engine}, {args.precision}")
    card = load_card(args.weights)
    out = args.out or default_out(card, args.precision, args.engine)
    encoder = load_encoder(card, args.precision, args.engine, THREADS)
    sizes = [template.size for template in card.alignment]

    results = []
    print(f"{'batch':>5}  {'runs':>4}  {'ms/batch':>9}  {'ms/chip':>8}")
    for batch, runs in CASES:
        per_batch = statistics.median(time_batches(encoder, batch, runs, sizes)) * 1000
        results.append(
            {
                "batch": batch,
                "runs": runs,
                "median_ms_per_batch": round(per_batch, 3),
                "median_ms_per_chip": round(per_batch / batch, 3),
            }
        )
        print(f"{batch:>5}  {runs:>4}  {per_batch:>9.2f}  {per_batch / batch:>8.2f}")

    write_report(out, {
        "weights": args.weights.name,
        "input_sizes": sizes,
        "engine": args.engine,
        "precision": args.precision,
        "results": results,
    }, threads=THREADS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
