"""The OpenVINO engine against torch on small networks: same numbers, same output structure, the
arithmetic pinned, one infer request per thread."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from model.encoders.compact_cnn import CompactCNN
from model.engines.compile import compile_network

pytest.importorskip("openvino")


def small_encoder() -> nn.Module:
    torch.manual_seed(0)
    return CompactCNN(embedding_dim=16, input_size=32, widths=[8, 8, 16, 16]).eval().requires_grad_(False)


class Nested(nn.Module):
    """Outputs in a nested structure, as YuNet's per-level tuples."""

    def forward(self, x: torch.Tensor):
        return [(x * 2, x.sum(dim=1, keepdim=True)), (x - 1,)]


def test_float32_matches_torch_at_any_batch():
    encoder = small_encoder()
    compiled = compile_network(encoder, [torch.zeros(2, 3, 32, 32)], engine="openvino", threads=1)
    for batch in (1, 3):
        chips = torch.rand(batch, 3, 32, 32) * 255
        with torch.inference_mode():
            torch.testing.assert_close(compiled(chips), encoder(chips), rtol=1e-4, atol=1e-4)


def test_nested_outputs_and_free_spatial_axes_come_back_as_torch_gave_them():
    compiled = compile_network(Nested(), [torch.zeros(1, 3, 8, 8)], engine="openvino", dynamic=((0, 2, 3),))
    x = torch.rand(2, 3, 16, 24)
    (doubled, summed), (shifted,) = compiled(x)
    torch.testing.assert_close(doubled, x * 2)
    torch.testing.assert_close(summed, x.sum(dim=1, keepdim=True))
    torch.testing.assert_close(shifted, x - 1)


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_the_arithmetic_is_pinned_to_float32_between_quantized_nodes(precision):
    """OpenVINO would lower float32 to bfloat16 on its own on CPUs with native bfloat16."""
    compiled = compile_network(small_encoder(), [torch.zeros(2, 3, 32, 32)], engine="openvino", precision=precision)
    assert "float32" in str(compiled.compiled.get_property("INFERENCE_PRECISION_HINT"))
    assert not [name for name in compiled.primitives() if "bf16" in name.lower()]


def test_concurrent_callers_get_their_own_answers():
    encoder = small_encoder()
    compiled = compile_network(encoder, [torch.zeros(2, 3, 32, 32)], engine="openvino", threads=1)
    inputs = [torch.rand(2, 3, 32, 32) * 255 for _ in range(4)]
    with torch.inference_mode():
        expected = [encoder(x) for x in inputs]
    results: dict[int, torch.Tensor] = {}

    def run(index: int) -> None:
        for _ in range(20):
            results[index] = compiled(inputs[index])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, output in results.items():
        torch.testing.assert_close(output, expected[index], rtol=1e-4, atol=1e-4)


def test_torch_is_the_reference_engine_and_unknown_engines_are_refused():
    encoder = small_encoder()
    assert compile_network(encoder, [], engine="torch") is encoder
    with pytest.raises(ValueError, match="unknown engine"):
        compile_network(encoder, [], engine="tensorrt")


def test_converting_sends_no_telemetry(monkeypatch):
    from openvino.tools.ovc import convert_impl, telemetry_stub, telemetry_utils

    compile_network(Nested(), [torch.zeros(1, 3, 8, 8)], engine="openvino")
    assert convert_impl.tm is telemetry_stub and telemetry_utils.tm is telemetry_stub
