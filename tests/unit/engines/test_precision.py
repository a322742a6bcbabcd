"""Reduced-precision inference: float32 in and out, bfloat16 inside, only where the CPU has it."""

import pytest
import torch
from torch import nn

from model.encoders.compact_cnn import CompactCNN
from model.encoders.fused import FusedEncoder
from model.engines import cpu, precision
from model.engines.precision import usable_precision
from model.engines.reference import ReducedPrecision, with_precision


def small_encoder() -> nn.Module:
    torch.manual_seed(0)
    return CompactCNN(embedding_dim=16, input_size=32, widths=[8, 8, 16, 16]).eval()


def test_float32_leaves_the_encoder_as_it_is():
    encoder = small_encoder()
    assert with_precision(encoder, "float32") is encoder


def test_bfloat16_takes_and_returns_float32_and_stays_close():
    encoder = small_encoder()
    chips = torch.rand(3, 3, 32, 32) * 255
    with torch.inference_mode():
        reference = encoder(chips)
        reduced = with_precision(encoder, "bfloat16")
        out = reduced(chips)
    assert isinstance(reduced, ReducedPrecision)
    assert next(reduced.parameters()).dtype == torch.bfloat16
    assert out.dtype == torch.float32 and out.shape == reference.shape
    cosine = nn.functional.cosine_similarity(out, reference, dim=-1)
    assert cosine.min() > 0.99


def test_fused_members_in_bfloat16_are_combined_in_float32():
    fused = FusedEncoder([{"architecture": "compact_cnn", "weight": 1.0,
                           "params": {"embedding_dim": 8, "input_size": 32, "widths": [8, 8, 8, 8]}}]).eval()
    with torch.inference_mode():
        out = with_precision(fused, "bfloat16")(torch.rand(2, 3, 32, 32) * 255)
    assert out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-6)


def test_bfloat16_falls_back_to_float32_where_the_cpu_would_emulate_it(monkeypatch):
    monkeypatch.setattr(precision, "native_bfloat16", lambda: False)
    assert usable_precision("bfloat16") == "float32"
    assert usable_precision("float32") == "float32"
    monkeypatch.setattr(precision, "native_bfloat16", lambda: True)
    assert usable_precision("bfloat16") == "bfloat16"


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        usable_precision("float16")


def test_int8_runs_only_on_openvino():
    assert usable_precision("int8", "openvino") == "int8"
    with pytest.raises(ValueError, match="openvino"):
        usable_precision("int8", "torch")


@pytest.mark.parametrize(("flags", "cap", "native"), [
    ({"avx512_bf16": True, "amx": False}, None, True),
    ({"avx512_bf16": False, "amx": True}, "AVX512_CORE_AMX", True),
    ({"avx512_bf16": True, "amx": False}, "AVX2", False),
    ({"avx512_bf16": True, "amx": False}, "AVX512_CORE", False),
    ({"avx512_bf16": False, "amx": False}, None, False),
])
def test_native_bfloat16_is_read_from_the_cpu_and_its_cap_without_torch(monkeypatch, flags, cap, native):
    monkeypatch.setattr(cpu, "cpu_isa", lambda: {"avx2": True, "avx512": True, **flags})
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert cpu.native_bfloat16() is native
