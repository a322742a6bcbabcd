"""Report names under ISA caps: one suffix, from the variables set, named as CAPS names them."""

from __future__ import annotations

import pytest

from model.engines import cpu
from model.engines.cpu import CAPS, ISA_CAPS, cap_name, isa_suffix

AVX512_CPU = {"avx2": True, "avx512": True, "avx512_bf16": True, "amx": True}
AVX2_CPU = {"avx2": True, "avx512": False, "avx512_bf16": False, "amx": False}


@pytest.fixture
def uncapped(monkeypatch):
    for name in ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cpu, "cpu_isa", lambda: AVX512_CPU)
    return monkeypatch


def test_uncapped_runs_on_an_avx512_cpu_have_no_suffix(uncapped):
    assert cap_name() is None and isa_suffix() == ""


def test_a_real_avx2_cpu_is_named_as_the_cap_that_emulates_it(uncapped):
    uncapped.setattr(cpu, "cpu_isa", lambda: AVX2_CPU)
    assert cap_name() is None and isa_suffix() == "_avx2"


def test_a_full_cap_is_named_as_caps_names_it(uncapped):
    for name, value in CAPS["avx2"].items():
        uncapped.setenv(name, value)
    assert cap_name() == "avx2" and isa_suffix() == "_avx2"  # as bench/results/*_avx2.json


def test_a_partial_cap_is_never_taken_for_a_full_one(uncapped):
    uncapped.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert isa_suffix() == "_onednn-avx2"
    uncapped.setenv("OPENCV_CPU_DISABLE", "AVX512-SKX,AVX2")
    assert isa_suffix() == "_onednn-avx2-opencv-avx512-skx-avx2"
