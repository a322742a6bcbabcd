"""Report names under ISA caps: one suffix, from the variables set, named as CAPS names them."""

from __future__ import annotations

import pytest

from model.engines.cpu import CAPS, ISA_CAPS, cap_name, isa_suffix


@pytest.fixture
def uncapped(monkeypatch):
    for name in ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_uncapped_runs_have_no_suffix(uncapped):
    assert cap_name() is None and isa_suffix() == ""


def test_a_full_cap_is_named_as_caps_names_it(uncapped):
    for name, value in CAPS["avx2"].items():
        uncapped.setenv(name, value)
    assert cap_name() == "avx2" and isa_suffix() == "_avx2"  # as bench/results/*_avx2.json


def test_a_partial_cap_is_never_taken_for_a_full_one(uncapped):
    uncapped.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert isa_suffix() == "_onednn-avx2"
    uncapped.setenv("OPENCV_CPU_DISABLE", "AVX512-SKX,AVX2")
    assert isa_suffix() == "_onednn-avx2-opencv-avx512-skx-avx2"
