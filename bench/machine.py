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

from model.paths import REPO_ROOT

# The ISA caps a run may be under: read by oneDNN (in torch and in OpenVINO's CPU plugin), ATen,
# MKL and OpenCV respectively, each when it loads.
ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "OPENCV_CPU_DISABLE")
# Every library held to AVX2, as on a CPU without AVX-512 (e.g. AMD EPYC before Zen 4).
CAPS = {
    "avx2": {
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OPENCV_CPU_DISABLE": "AVX512-SKX",
    },
}
FLAGS = {"avx2": "avx2", "avx512": "avx512f", "avx512_bf16": "avx512_bf16", "amx": "amx_bf16"}


def cpu_model() -> str:
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_isa() -> dict[str, bool]:
    """The instruction sets that matter here, as the CPU reports them (before any cap)."""
    flags = next((line.split(":", 1)[1].split() for line in _cpuinfo() if line.startswith("flags")), [])
    return {name: flag in flags for name, flag in FLAGS.items()}


def isa_caps() -> dict[str, str]:
    return {name: os.environ[name] for name in ISA_CAPS if name in os.environ}


def describe() -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "isa": cpu_isa(),
        "isa_caps": isa_caps(),
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def isa_line() -> str:
    """One line for a bench's printout: the CPU, its ISA and any cap on it."""
    isa = ", ".join(name for name, present in cpu_isa().items() if present) or "no AVX2"
    caps = ", ".join(f"{name}={value}" for name, value in isa_caps().items())
    return f"CPU: {cpu_model()} ({isa}){'; capped: ' + caps if caps else ''}"


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


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
