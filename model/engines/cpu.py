"""The CPU a run is on: its model, the instruction sets that change which kernels run, and any cap
held on them (e.g. ONEDNN_MAX_CPU_ISA=AVX2, to measure an AVX2-only CPU on a newer one). Figures of
speed name it, and so do a card's measurements: int8 kernels round differently by ISA."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

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


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


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


def describe_cpu() -> dict[str, Any]:
    return {"model": cpu_model(), "isa": [name for name, present in cpu_isa().items() if present],
            "isa_caps": isa_caps(), "cores": len(os.sched_getaffinity(0))}


def isa_line() -> str:
    """One line for a printout: the CPU, its ISA and any cap on it."""
    cpu = describe_cpu()
    caps = ", ".join(f"{name}={value}" for name, value in cpu["isa_caps"].items())
    return f"CPU: {cpu['model']} ({', '.join(cpu['isa']) or 'no AVX2'}){'; capped: ' + caps if caps else ''}"


def cap_name() -> str | None:
    """The cap this run is under, by its name in CAPS (e.g. "avx2"); None uncapped. Variables set
    that match no entry exactly are named by their values (e.g. "onednn-avx2" for
    ONEDNN_MAX_CPU_ISA=AVX2 alone), so that such a run is never taken for a full cap."""
    caps = isa_caps()
    if not caps:
        return None
    for name, variables in CAPS.items():
        if caps == variables:
            return name
    named = "-".join(f"{variable.split('_')[0]}-{value}" for variable, value in caps.items())
    return re.sub(r"[^a-z0-9]+", "-", named.lower()).strip("-")


def isa_suffix() -> str:
    """For a report's file name, the kind of CPU its figures stand for: `_avx2` under the avx2 cap
    of CAPS or on a CPU whose widest vectors are AVX2 (a real one supersedes the emulation), other
    caps by cap_name(), nothing on an AVX-512 CPU run uncapped."""
    name = cap_name()
    if name:
        return f"_{name}"
    isa = cpu_isa()
    return "_avx2" if isa["avx2"] and not isa["avx512"] else ""


# oneDNN's ISA caps at or above which it computes bfloat16 natively (ONEDNN_MAX_CPU_ISA's values).
_BFLOAT16_CAPS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "ALL", "DEFAULT")


def native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions (AVX512-BF16, AMX) and no cap hides
    them from oneDNN, which then computes bfloat16 at about twice float32's speed."""
    isa = cpu_isa()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    return (isa["avx512_bf16"] or isa["amx"]) and cap.startswith(_BFLOAT16_CAPS)
