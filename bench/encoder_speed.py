"""Encoder speed on CPU with 2 threads (the serving setup): batch 1 (one request) and batch 32.

    python bench/encoder_speed.py [--weights DIR] [--out FILE]

Prints median milliseconds per batch and per chip, and writes bench/results/encoder_speed.json for
the default encoder or bench/results/encoder_speed_<card name>.json for any other.
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


def time_batches(encoder: torch.nn.Module, batch: int, runs: int, size: int) -> list[float]:
    """Seconds per forward pass over `runs` passes, after a warm-up (allocator, oneDNN kernels)."""
    chips = torch.rand(batch, 3, size, size) * 255
    timings = []
    with torch.inference_mode():
        for _ in range(WARMUP_RUNS):
            encoder(chips)
        for _ in range(runs):
            start = time.perf_counter()
            encoder(chips)
            timings.append(time.perf_counter() - start)
    return timings


def default_out(card: EncoderCard) -> Path:
    """The default encoder keeps its original file; every other card gets its own, by name."""
    if card.folder.resolve() == DEFAULT_WEIGHTS.resolve():
        return RESULTS / "encoder_speed.json"
    return RESULTS / f"encoder_speed_{card.name}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument(
        "--out", type=Path, help="result file (default: by the card's name, as above)"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(THREADS)
    card = load_card(args.weights)
    out = args.out or default_out(card)
    encoder = card.load_encoder()
    size = card.template.size

    results = []
    print(f"{'batch':>5}  {'runs':>4}  {'ms/batch':>9}  {'ms/chip':>8}")
    for batch, runs in CASES:
        per_batch = statistics.median(time_batches(encoder, batch, runs, size)) * 1000
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
        "input_size": size,
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
