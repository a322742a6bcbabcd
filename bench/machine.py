"""What every benchmark says about the machine it ran on, and how it writes its figures.

Speed depends on the CPU's instruction sets as much as on its clock: the encoders run bfloat16 only
where the CPU computes it natively, and oneDNN picks its kernels by ISA. So every report names the
CPU, the ISA it offers (and any cap set on it, e.g. ONEDNN_MAX_CPU_ISA=AVX2 to measure an AVX2-only
CPU on a newer one), the torch threads and versions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from model.engines.cpu import CAPS, describe_cpu
from model.paths import REPO_ROOT


def describe() -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": describe_cpu(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


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
