"""Encoder speed on CPU with 2 threads (the serving setup): batch 1 (one request) and batch 32.

    python bench/encoder_speed.py [--weights DIR] [--precision float32|bfloat16] [--out FILE]

Prints median milliseconds per batch and per chip (a fused encoder's chip is one per member), and
writes bench/results/encoder_speed.json for dlib-resnet-v1 in float32 or
bench/results/encoder_speed_<card name>[_<precision>].json for any other case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from model.card import EncoderCard, load_card
from model.encoders.precision import PRECISIONS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = ROOT / "weights" / "dlib-resnet-v1"
RESULTS = ROOT / "bench" / "results"
THREADS = 2
CASES = ((1, 100), (32, 20))  # (batch size, timed runs)
WARMUP_RUNS = 5


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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


def default_out(card: EncoderCard, precision: str) -> Path:
    """The default encoder in float32 keeps its original file; every other case gets its own."""
    suffix = "" if precision == "float32" else f"_{precision}"
    if card.folder.resolve() == DEFAULT_WEIGHTS.resolve() and not suffix:
        return RESULTS / "encoder_speed.json"
    return RESULTS / f"encoder_speed_{card.name}{suffix}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument(
        "--out", type=Path, help="result file (default: by the card's name, as above)"
    )
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="float32")
    args = parser.parse_args(argv)

    torch.set_num_threads(THREADS)
    card = load_card(args.weights)
    out = args.out or default_out(card, args.precision)
    encoder = card.load_encoder(args.precision)
    sizes = [template.size for template in card.templates]

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

    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "weights": args.weights.name,
        "input_sizes": sizes,
        "precision": args.precision,
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "threads": THREADS,
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
