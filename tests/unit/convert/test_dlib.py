"""dlib's serialization format, read from hand-made bytes (no .dat file needed)."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from model.convert.dlib import (
    TAG,
    ConversionError,
    DlibReader,
    LayerSpec,
    read_network,
    write_weights,
)
from model.encoders.dlib_resnet import INPUT_MEAN, INPUT_SIZE, DlibResNet


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"\x01\x00", 0),
        (b"\x01\x01", 1),
        (b"\x01\xff", 255),
        (b"\x02\x2c\x01", 300),
        (b"\x81\x01", -1),
        (b"\x82\x2c\x01", -300),
        (b"\x08" + b"\xff" * 7 + b"\x7f", 2**63 - 1),
    ],
)
def test_int(data, value):
    reader = DlibReader(data)
    assert reader.read_int() == value
    assert reader.remaining == 0


@pytest.mark.parametrize("data", [b"\x11\x00", b"\x00", b"\x09" + b"\x00" * 9, b"\x02\x01"])
def test_int_rejects_bad_control_byte_or_truncation(data):
    with pytest.raises(ConversionError):
        DlibReader(data).read_int()


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"\x01\x00\x01\x00", 0.0),
        (b"\x01\x03\x81\x01", 1.5),  # 3 * 2**-1
        (b"\x81\x05\x01\x02", -20.0),  # -5 * 2**2
        (b"\x03\x0a\xd7\xa3\x81\x1c", float(np.float32(0.04))),  # as the loss record stores it
        (b"\x01\x00\x02\x00\x7d", math.inf),  # exponent 32000
        (b"\x01\x00\x02\x01\x7d", -math.inf),  # exponent 32001
    ],
)
def test_float(data, value):
    reader = DlibReader(data)
    assert reader.read_float() == value
    assert reader.remaining == 0


def test_float_nan():
    assert math.isnan(DlibReader(b"\x01\x00\x02\x02\x7d").read_float())  # exponent 32002


def test_string_and_bool():
    reader = DlibReader(b"\x01\x05relu_" + b"\x01\x00" + b"10")
    assert reader.read_str() == "relu_"
    assert reader.read_str() == ""
    assert reader.read_bool() is True
    assert reader.read_bool() is False
    assert reader.remaining == 0


def test_bool_rejects_other_bytes():
    with pytest.raises(ConversionError):
        DlibReader(b"\x01").read_bool()


def test_tensor():
    values = [1.0, -2.5, 0.125, 3e38]
    data = b"\x01\x02" + b"\x01\x01\x01\x02\x01\x01\x01\x02" + struct.pack("<4f", *values)
    reader = DlibReader(data)
    tensor = reader.read_tensor()
    assert tensor.shape == (1, 2, 1, 2)
    assert tensor.dtype == np.float32
    assert tensor.reshape(-1).tolist() == [float(np.float32(v)) for v in values]
    assert reader.remaining == 0


def test_empty_tensor_has_no_data():
    reader = DlibReader(b"\x01\x02" + b"\x01\x00" * 4 + b"\x01\x07")
    assert reader.read_tensor().shape == (0, 0, 0, 0)
    assert reader.read_int() == 7


def test_tensor_rejects_other_version_and_short_data():
    with pytest.raises(ConversionError, match="tensor version"):
        DlibReader(b"\x01\x01" + b"\x01\x00" * 4).read_tensor()
    with pytest.raises(ConversionError, match="more bytes"):
        DlibReader(b"\x01\x02" + b"\x01\x01" * 4 + b"\x00\x00").read_tensor()


def test_alias_tensor_is_a_shape():
    reader = DlibReader(b"\x01\x01" + b"\x01\x01\x01\x20\x01\x01\x01\x01")
    assert reader.read_alias() == (1, 32, 1, 1)
    assert reader.remaining == 0


# ---- A whole (tiny) network, written the way dlib nests it ---------------------------------------


def _int(value: int) -> bytes:
    magnitude = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(magnitude) | (0x80 if value < 0 else 0)]) + magnitude


def _float(value: float) -> bytes:
    mantissa, exponent = math.frexp(value)
    return _int(int(mantissa * 2**53)) + _int(exponent - 53)


def _str(value: str) -> bytes:
    return _int(len(value)) + value.encode()


def _tensor(array: np.ndarray) -> bytes:
    shape = (*array.shape, *(1,) * (4 - array.ndim))
    return _int(2) + b"".join(map(_int, shape)) + array.astype("<f4").tobytes()


def _alias(*shape: int) -> bytes:
    return _int(1) + b"".join(map(_int, shape))


def _layer_tail(innermost: bool = False) -> bytes:
    empty = _tensor(np.zeros((0, 0, 0, 0)))
    return b"110" + empty * 3 + (_int(1) if innermost else b"")


CONV_WEIGHT = np.arange(12, dtype=np.float32).reshape(2, 3, 2, 1)
CONV_BIAS = np.array([0.5, -0.5], dtype=np.float32)
GAMMA, BETA = np.array([2.0, 3.0], dtype=np.float32), np.array([-1.0, 1.0], dtype=np.float32)
FC_STORED = np.arange(6, dtype=np.float32).reshape(2, 3)  # inputs x outputs

LAYERS = [
    LayerSpec("con_4", (2, 3, 2, 1, 1, 1, 0, 0), "conv"),
    LayerSpec("affine_", (0,), "affine"),
    TAG,
    LayerSpec("relu_"),
    LayerSpec("fc_2", (3, 2), "fc"),
]


def _network() -> bytes:
    con = _str("con_4") + _tensor(np.concatenate([CONV_WEIGHT.reshape(-1), CONV_BIAS]))
    con += b"".join(map(_int, (2, 2, 1, 1, 1, 0, 0))) + _alias(2, 3, 2, 1) + _alias(1, 2, 1, 1)
    con += _float(1.0) * 4
    affine = _str("affine_") + _tensor(np.concatenate([GAMMA, BETA]))
    affine += _alias(1, 2, 1, 1) + _alias(1, 2, 1, 1) + _int(0)
    fc = _str("fc_2") + _int(3) + _int(2) + _tensor(FC_STORED)
    fc += _alias(2, 3, 1, 1) + _alias(0, 0, 0, 0) + _int(1) + _float(1.0) * 4
    return b"".join(
        [
            _int(1) + _str("loss_metric_2") + _float(0.04) + _float(0.6),
            _int(2) + _int(2) + _int(1) + _int(2) + _int(3),  # versions: fc, relu, tag, affine, con
            _str("input_rgb_image_sized"),
            *(_float(float(np.float32(m))) for m in INPUT_MEAN),
            _int(INPUT_SIZE) + _int(INPUT_SIZE),
            con + _layer_tail(innermost=True),
            affine + _layer_tail(),
            _str("relu_") + _layer_tail(),
            fc + _layer_tail(),
        ]
    )


def test_network_maps_parameters_innermost_first():
    state = read_network(_network(), LAYERS)
    keys = ["affine.bias", "affine.weight", "conv.bias", "conv.weight", "fc.weight", "mean"]
    assert sorted(state) == keys
    np.testing.assert_array_equal(state["conv.weight"], CONV_WEIGHT)
    np.testing.assert_array_equal(state["conv.bias"], CONV_BIAS)
    np.testing.assert_array_equal(state["affine.weight"], GAMMA)
    np.testing.assert_array_equal(state["affine.bias"], BETA)
    np.testing.assert_array_equal(state["fc.weight"], FC_STORED.T)  # a linear layer's out x in
    np.testing.assert_array_equal(state["mean"].reshape(-1), np.float32(INPUT_MEAN))


def test_network_must_be_consumed_exactly():
    with pytest.raises(ConversionError, match="unread bytes"):
        read_network(_network() + b"\x00", LAYERS)


def test_network_must_match_the_architecture():
    with pytest.raises(ConversionError, match="version of layer 2"):
        read_network(_network(), [*LAYERS[:2], LayerSpec("relu_"), *LAYERS[3:]])
    wider = LayerSpec("con_4", (4, 3, 2, 1, 1, 1, 0, 0), "conv")
    with pytest.raises(ConversionError, match="geometry of layer 0"):
        read_network(_network(), [wider, *LAYERS[1:]])


def test_model_json_keeps_keys_other_tools_own(tmp_path):
    write_weights(DlibResNet(), tmp_path)  # a fresh folder gets a complete card
    fresh = json.loads((tmp_path / "model.json").read_text())
    calibration = {"plain": {"default": "x", "operating_points": {"x": {"threshold": 0.6, "description": "a point", "held_out": {"far": 0.1, "frr": 0.2}}}}}
    evaluation = {"lfw_view2": {"results": {"plain": {"accuracy_mean": 0.99}}}}
    (tmp_path / "model.json").write_text(json.dumps({**fresh, "version": "0.0.1", "calibration": calibration,
                                                     "evaluation": evaluation}))
    write_weights(DlibResNet(), tmp_path)
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["calibration"] == calibration and card["evaluation"] == evaluation
    assert card["version"] == "1.0.0"
    assert card["architecture"] == {"name": "dlib_resnet", "params": {}}
    assert card["provenance"]["parameters"] == 5_614_592
    assert (tmp_path / "LICENSE").read_text().startswith("dlib-resnet-v1")
