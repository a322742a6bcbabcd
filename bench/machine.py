"""What every benchmark says about the machine it ran on, and how it writes its figures.

Speed depends on the CPU's instruction sets as much as on its clock: the encoders run bfloat16 only
where the CPU computes it natively, and oneDNN picks its kernels by ISA. So every report names the
CPU, the ISA it offers (and any cap set on it, e.g. ONEDNN_MAX_CPU_ISA=AVX2 to measure an AVX2-only
CPU on a newer one), the torch threads and versions.
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

from model.engines.cpu import CAPS, describe_cpu, isa_line
from model.paths import DEFAULT_DATA_DIR, REPO_ROOT, REPORTS_DIR


def describe() -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": describe_cpu(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def server_bench_parser(doc: str, report: str) -> argparse.ArgumentParser:
    """The arguments every benchmark of a served `facever serve` takes: the datasets, where the
    JSON goes (bench/results/<report>[_<cap>].json) and the ISA cap to run under."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--output", type=Path, help=f"default: bench/results/{report}[_<cap>].json")
    parser.add_argument("--cap", choices=CAPS, help="hold the server's libraries to this ISA")
    parser.set_defaults(report=report)
    return parser


def parse_server_bench(parser: argparse.ArgumentParser, module: str) -> argparse.Namespace:
    """The arguments, under the cap asked for (see run_under_cap), with the CPU printed."""
    args = parser.parse_args()
    run_under_cap(args.cap, module)
    args.output = args.output or REPORTS_DIR / f"{args.report}{'_' + args.cap if args.cap else ''}.json"
    print(isa_line())
    return args


def run_under_cap(cap: str | None, module: str) -> None:
    """Re-run this benchmark (`python -m module` with the same arguments) with the ISA `cap`'s
    variables set, unless they already are: the libraries read them when they load. Servers the
    benchmark starts inherit them."""
    if cap and any(os.environ.get(name) != value for name, value in CAPS[cap].items()):
        os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], {**os.environ, **CAPS[cap]})


def write_report(path: Path, report: dict[str, Any]) -> Path:
    """The report with the machine's description, as JSON at `path`; says where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "machine": describe()}, indent=2) + "\n")
    shown = path.resolve().relative_to(REPO_ROOT) if path.resolve().is_relative_to(REPO_ROOT) else path
    print(f"wrote {shown}")
    return path
