"""What every benchmark says about the machine it ran on, and how it writes its figures.

Speed depends on the CPU's instruction sets as much as on its clock: the encoders run bfloat16 only
where the CPU computes it natively, and oneDNN picks its kernels by ISA. So every report names the
CPU, the ISA it offers (and any cap set on it, e.g. ONEDNN_MAX_CPU_ISA=AVX2 to measure an AVX2-only
CPU on a newer one), the threads the run itself was given (not torch's current count, which is 1
beside an OpenVINO network and, in a served benchmark, the client's) and the versions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from model.card import load_card
from model.engines.cpu import CAPS, describe_cpu, isa_line, isa_suffix
from model.paths import DEFAULT_DATA_DIR, REPO_ROOT, REPORTS_DIR


def describe(threads: int | None = None) -> dict[str, Any]:
    """`threads`: what the run computed on (left out where the work is another process's)."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": describe_cpu(),
        "torch": torch.__version__,
        **({"threads": threads} if threads is not None else {}),
        "machine": platform.machine(),
    }


def add_cap_argument(parser: argparse.ArgumentParser, what: str = "every library") -> None:
    """`--cap NAME`: hold `what` to an ISA of CAPS (see apply_cap)."""
    parser.add_argument("--cap", choices=CAPS, help=f"hold {what} to this ISA (re-runs the benchmark)")


def apply_cap(args: argparse.Namespace, module: str) -> None:
    """Run under the cap `args.cap` asks for (see run_under_cap), then print the CPU. Reports
    written after it are named by isa_suffix(): `_avx2` under the avx2 cap or on an AVX2 CPU."""
    run_under_cap(args.cap, module)
    print(isa_line())


def server_bench_parser(doc: str, report: str) -> argparse.ArgumentParser:
    """The arguments every benchmark of a served `facever serve` takes: the datasets, where the
    JSON goes (bench/results/<report>[_<cap>].json) and the ISA cap to run under."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--output", type=Path, help=f"default: bench/results/{report}[_<cap>].json")
    add_cap_argument(parser, "the server's libraries")
    parser.set_defaults(report=report)
    return parser


def parse_server_bench(parser: argparse.ArgumentParser, module: str) -> argparse.Namespace:
    """The arguments, under the cap asked for (see apply_cap), with the CPU printed. A run on other
    weights than the service's (`--weights`, where the benchmark takes it) reports under
    bench/results/<card name>/."""
    args = parser.parse_args()
    apply_cap(args, module)
    folder = REPORTS_DIR / load_card(args.weights).name if getattr(args, "weights", None) else REPORTS_DIR
    args.output = args.output or folder / f"{args.report}{isa_suffix()}.json"
    return args


def run_under_cap(cap: str | None, module: str) -> None:
    """Re-run this benchmark (`python -m module` with the same arguments) with the ISA `cap`'s
    variables set, unless they already are: the libraries read them when they load. Servers the
    benchmark starts inherit them."""
    if cap and any(os.environ.get(name) != value for name, value in CAPS[cap].items()):
        os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], {**os.environ, **CAPS[cap]})


def write_report(path: Path, report: dict[str, Any], threads: int | None = None) -> Path:
    """The report with the machine's description, as JSON at `path`; says where it went.
    `threads`: those the run was given (None for a served benchmark: the server's settings are in
    its report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "machine": describe(threads)}, indent=2) + "\n")
    shown = path.resolve().relative_to(REPO_ROOT) if path.resolve().is_relative_to(REPO_ROOT) else path
    print(f"wrote {shown}")
    return path
