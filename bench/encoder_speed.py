"""Encoder speed on CPU with 2 threads (the serving setup): batch 1 (one request) and batch 32.

    python -m bench.encoder_speed [--weights DIR] [--precision float32|bfloat16|int8] [--engine torch|openvino]

Prints median milliseconds per batch and per chip (a fused encoder's chip is one per member); each
member's time per chip at batch 1, its multiply-adds (counted on the torch reference) and the rate
that makes; and this CPU's float32 matrix-multiply rate on the same threads, the ceiling of any
float32 network here (so a member near it can only get faster with fewer operations, or with
arithmetic the CPU runs faster). Writes bench/results/encoder_speed.json for dlib-resnet-v1 in
float32 on torch, or bench/results/encoder_speed_<card name>[_<engine>_<precision>].json for any
other case (the engine and precision named unless they are torch and float32), `_avx2` added on an
AVX2 CPU (model.engines.cpu.isa_suffix).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.machine import write_report
from model.card import EncoderCard, load_card
from model.encoders import load_encoder
from model.encoders.inference import InferenceEncoder
from model.encoders.loading import per_input_networks, reference_encoder
from model.engines.cpu import isa_line, isa_suffix
from model.paths import REPORTS_DIR, WEIGHTS_DIR
from model.types import ENGINE_NAMES, PRECISION_NAMES

DEFAULT_WEIGHTS = WEIGHTS_DIR / "dlib-resnet-v1"
RESULTS = REPORTS_DIR
THREADS = 2
CASES = ((1, 100), (32, 20))  # (batch size, timed runs)
WARMUP_RUNS = 5
GEMM_SIDE = 2048  # square float32 matrices: large enough for the BLAS to reach its rate


def random_chips(batch: int, sizes: list[int]) -> list[np.ndarray]:
    """One batch of chips per template size: a fused encoder takes one per member."""
    rng = np.random.default_rng(0)
    return [(rng.random((batch, 3, size, size)) * 255).astype(np.float32) for size in sizes]


def time_batches(run, inputs: list, runs: int) -> list[float]:
    """Seconds per `run(*inputs)` over `runs` calls, after a warm-up (allocator, oneDNN kernels)."""
    timings = []
    with torch.inference_mode():
        for _ in range(WARMUP_RUNS):
            run(*inputs)
        for _ in range(runs):
            start = time.perf_counter()
            run(*inputs)
            timings.append(time.perf_counter() - start)
    return timings


def multiply_adds(network: torch.nn.Module, example: torch.Tensor) -> int:
    """Multiply-adds of one pass over `example` (one chip): those of every convolution and linear
    layer, which are all but a fraction of a percent of a face network's arithmetic."""
    counted = []

    def count(layer: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(layer, torch.nn.Conv2d):
            counted.append(output.numel() * layer.in_channels // layer.groups * layer.weight[0, 0].numel())
        elif isinstance(layer, torch.nn.Linear):
            counted.append(output.numel() * layer.in_features)

    hooks = [layer.register_forward_hook(count) for layer in network.modules()]
    with torch.inference_mode():
        network(example)
    for hook in hooks:
        hook.remove()
    return sum(counted)


def float32_gemm_gflops() -> float:
    """This CPU's float32 matrix-multiply rate on the benchmark's threads, median of 10 products."""
    a, b = torch.rand(GEMM_SIDE, GEMM_SIDE), torch.rand(GEMM_SIDE, GEMM_SIDE)
    seconds = statistics.median(time_batches(torch.matmul, [a, b], 10))
    return 2 * GEMM_SIDE**3 / seconds / 1e9


def member_rows(card: EncoderCard, encoder: InferenceEncoder) -> list[dict]:
    """Each member of the encoder (or the encoder itself) alone: ms per chip at batch 1, its
    multiply-adds per chip, and the float32-equivalent GFLOP/s (2 per multiply-add) it runs at."""
    rows = []
    for network, (reference, example), spec in zip(encoder.networks, per_input_networks(card, reference_encoder(card)),
                                                   card.input):
        macs = multiply_adds(reference, example[0][:1])
        ms = statistics.median(time_batches(network, random_chips(1, [spec.size]), CASES[0][1])) * 1000
        rows.append({"input_size": spec.size, "multiply_adds": macs, "median_ms_per_chip": round(ms, 3),
                     "gflops": round(2 * macs / ms / 1e6, 1)})
    return rows


def default_out(card: EncoderCard, precision: str, engine: str) -> Path:
    """The default encoder in float32 keeps its original file; every other case gets its own."""
    suffix = "" if (precision, engine) == ("float32", "torch") else f"_{engine}_{precision}"
    name = "" if card.folder.resolve() == DEFAULT_WEIGHTS.resolve() and not suffix else f"_{card.name}{suffix}"
    return RESULTS / f"encoder_speed{name}{isa_suffix()}.json"


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
        per_batch = statistics.median(time_batches(encoder, random_chips(batch, sizes), runs)) * 1000
        results.append(
            {
                "batch": batch,
                "runs": runs,
                "median_ms_per_batch": round(per_batch, 3),
                "median_ms_per_chip": round(per_batch / batch, 3),
            }
        )
        print(f"{batch:>5}  {runs:>4}  {per_batch:>9.2f}  {per_batch / batch:>8.2f}")

    members = member_rows(card, encoder)
    gemm = float32_gemm_gflops()
    print(f"{'input':>5}  {'GMAC/chip':>9}  {'ms/chip':>8}  {'GFLOP/s':>7}   (batch 1, each network alone)")
    for row in members:
        print(f"{row['input_size']:>5}  {row['multiply_adds'] / 1e9:>9.3f}  {row['median_ms_per_chip']:>8.2f}  "
              f"{row['gflops']:>7.1f}")
    print(f"float32 matrix multiply on {THREADS} threads ({GEMM_SIDE}x{GEMM_SIDE}): {gemm:.1f} GFLOP/s")
    write_report(out, {
        "weights": args.weights.name,
        "input_sizes": sizes,
        "engine": args.engine,
        "precision": args.precision,
        "results": results,
        "members": members,
        "float32_gemm_gflops": round(gemm, 1),
    }, threads=THREADS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
