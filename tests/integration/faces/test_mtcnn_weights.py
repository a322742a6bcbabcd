"""The committed MTCNN weights are the files weights/mtcnn/SHA256SUMS names, and the OpenVINO models
beside them compute what the weights do."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from model.convert.mtcnn import NETWORK_FILES
from model.engines.compile import load_network
from model.faces import mtcnn
from tests.conftest import WEIGHTS_DIR

MTCNN_DIR = WEIGHTS_DIR / "mtcnn"


def test_sha256sums_match_the_files():
    listed = {}
    for line in (MTCNN_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        listed[name] = digest
    compiled = [name for file in mtcnn.COMPILED_FILES for name in (file, str(Path(file).with_suffix(".bin")))]
    assert sorted(listed) == sorted([*NETWORK_FILES, *compiled])
    for name, digest in listed.items():
        assert hashlib.sha256((MTCNN_DIR / name).read_bytes()).hexdigest() == digest, name


def test_licence_and_provenance_are_present():
    assert "MIT License" in (MTCNN_DIR / "LICENSE").read_text()
    assert "facenet-pytorch==2.6.0" in (MTCNN_DIR / "README.md").read_text()


@pytest.mark.parametrize("index", range(3))
def test_each_compiled_network_computes_what_its_weights_do(index):
    name, weights, compiled = list(mtcnn.NETWORKS)[index], mtcnn.WEIGHTS_FILES[index], mtcnn.COMPILED_FILES[index]
    engines = [
        load_network(engine, compiled=MTCNN_DIR / compiled,
                     reference=lambda: mtcnn._reference(name, MTCNN_DIR / weights), channels_last=True)
        for engine in ("openvino", "torch")
    ]
    shape = (1, 37, 45, 3) if name == "pnet" else (5, mtcnn.EXAMPLE_INPUTS[index][2], mtcnn.EXAMPLE_INPUTS[index][3], 3)
    crops = np.random.default_rng(index).uniform(-1, 1, shape).astype(np.float32)
    for ours, theirs in zip(*(network(crops) for network in engines)):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
