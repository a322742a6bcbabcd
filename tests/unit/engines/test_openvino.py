"""The engines' one contract on small networks: NumPy in, a flat list of NumPy arrays out; OpenVINO
gives torch's numbers, with the arithmetic pinned and one infer request per thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from model.encoders.compact_cnn import CompactCNN
from model.engines.compile import TorchMissing, compile_network, load_compiled, load_network
from model.engines.conversion import save_converted
from model.engines.openvino import CompiledNetwork
from model.engines.reference import TorchNetwork

pytest.importorskip("openvino")


def small_encoder() -> nn.Module:
    torch.manual_seed(0)
    return CompactCNN(embedding_dim=16, input_size=32, widths=[8, 8, 16, 16]).eval().requires_grad_(False)


def reference(encoder: nn.Module, chips: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return encoder(torch.from_numpy(chips)).numpy()


class Nested(nn.Module):
    """Outputs in a nested structure, as YuNet's per-level tuples."""

    def forward(self, x: torch.Tensor):
        return [(x * 2, x.sum(dim=1, keepdim=True)), (x - 1,)]


def test_float32_matches_torch_at_any_batch():
    encoder = small_encoder()
    compiled = compile_network(encoder, [torch.zeros(2, 3, 32, 32)], engine="openvino", threads=1)
    assert isinstance(compiled, CompiledNetwork)
    for batch in (1, 3):
        chips = (np.random.default_rng(batch).random((batch, 3, 32, 32)) * 255).astype(np.float32)
        (embeddings,) = compiled(chips)
        np.testing.assert_allclose(embeddings, reference(encoder, chips), rtol=1e-4, atol=1e-4)


def test_nested_outputs_come_back_flat_in_torch_s_tree_order_on_both_engines():
    x = np.random.default_rng(0).random((2, 3, 16, 24)).astype(np.float32)
    for engine in ("openvino", "torch"):
        network = compile_network(Nested(), [torch.zeros(1, 3, 8, 8)], engine=engine, dynamic=((0, 2, 3),))
        doubled, summed, shifted = network(x)
        np.testing.assert_allclose(doubled, x * 2, rtol=1e-6)
        np.testing.assert_allclose(summed, x.sum(axis=1, keepdims=True), rtol=1e-6)
        np.testing.assert_allclose(shifted, x - 1, rtol=1e-6)


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_the_arithmetic_is_pinned_to_float32_between_quantized_nodes(precision):
    """OpenVINO would lower float32 to bfloat16 on its own on CPUs with native bfloat16."""
    compiled = compile_network(small_encoder(), [torch.zeros(2, 3, 32, 32)], engine="openvino", precision=precision)
    assert "float32" in str(compiled.compiled.get_property("INFERENCE_PRECISION_HINT"))
    assert not [name for name in compiled.primitives() if "bf16" in name.lower()]


def test_concurrent_callers_get_their_own_answers():
    encoder = small_encoder()
    compiled = compile_network(encoder, [torch.zeros(2, 3, 32, 32)], engine="openvino", threads=1)
    inputs = [(np.random.default_rng(i).random((2, 3, 32, 32)) * 255).astype(np.float32) for i in range(4)]
    expected = [reference(encoder, x) for x in inputs]
    results: dict[int, np.ndarray] = {}

    def run(index: int) -> None:
        for _ in range(20):
            results[index] = compiled(inputs[index])[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, output in results.items():
        np.testing.assert_allclose(output, expected[index], rtol=1e-4, atol=1e-4)


def test_a_saved_model_takes_images_or_channels_last_arrays_as_the_torch_engine_does(tmp_path):
    """load_network's two engines take the same arrays: uint8 RGB images (converted to the
    network's channel order) or NHWC float32, whatever the network's own NCHW input."""
    network = nn.Conv2d(3, 2, kernel_size=3).eval().requires_grad_(False)
    save_converted(network, [torch.zeros(1, 3, 16, 16)], tmp_path / "conv.xml", ((0, 2, 3),))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 20, 24, 3), dtype=np.uint8)
    for options, inputs in (({"image_channels": "BGR"}, images), ({"channels_last": True}, images / np.float32(3))):
        compiled, torch_engine = (
            load_network(engine, compiled=tmp_path / "conv.xml", reference=lambda: network, **options)
            for engine in ("openvino", "torch")
        )
        assert isinstance(torch_engine, TorchNetwork)
        np.testing.assert_allclose(compiled(inputs)[0], torch_engine(inputs)[0], rtol=1e-5, atol=1e-3)
    bgr = torch.from_numpy(images[..., ::-1].astype(np.float32)).permute(0, 3, 1, 2)
    with torch.inference_mode():
        expected = network(bgr).numpy()
    loaded = load_compiled(tmp_path / "conv.xml", precision="float32", image_channels="BGR")
    np.testing.assert_allclose(loaded(images)[0], expected, rtol=1e-5, atol=1e-3)


def test_unknown_engines_are_refused():
    with pytest.raises(ValueError, match="unknown engine"):
        compile_network(small_encoder(), [], engine="tensorrt")


def test_the_torch_engine_without_torch_says_what_to_install(monkeypatch):
    from model.engines import compile as engines

    monkeypatch.setattr(engines.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TorchMissing, match=r"facever\[torch\]"):
        engines.check_engine("torch")


def test_converting_sends_no_telemetry():
    from openvino.tools.ovc import convert_impl, telemetry_stub, telemetry_utils

    compile_network(Nested(), [torch.zeros(1, 3, 8, 8)], engine="openvino")
    assert convert_impl.tm is telemetry_stub and telemetry_utils.tm is telemetry_stub
