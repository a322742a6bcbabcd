"""The compiled serving path against the torch reference, on real LFW faces: the OpenVINO float32
encoder and detector reproduce torch's numbers; the int8 default stays close to the float32 encoder
it was quantized from, and close to itself on a CPU held to AVX2 (oneDNN's int8 kernels differ
between ISAs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.evaluation.protocols import read_pairs
from model.faces.yunet import YuNet
from model.images import load_image, to_array
from model.paths import DEFAULT_ENCODER_DIR, WEIGHTS_DIR
from model.verify.pipeline import FaceVerifier
from tests.conftest import REPO_ROOT

pytest.importorskip("openvino")

FLOAT_CARD = WEIGHTS_DIR / "fused-dlib-sface-yunet"
IMAGES = 16


def pair_images(lfw_dir: Path) -> list[str]:
    pairs = read_pairs(lfw_dir / "pairs.txt")[: IMAGES // 2]
    return sorted({name for pair in pairs for name in (pair.first, pair.second)})


def embeddings(verifier: FaceVerifier, lfw_dir: Path, names: list[str]) -> np.ndarray:
    faces, _ = verifier.embed([to_array(load_image(lfw_dir / "images" / name)) for name in names])
    return np.stack([face.embedding for face in faces])


@pytest.fixture(scope="module")
def names(lfw_dir: Path) -> list[str]:
    return pair_images(lfw_dir)


@pytest.fixture(scope="module")
def reference(lfw_dir: Path, names: list[str]) -> np.ndarray:
    """The float32 torch encoder, plain: what the int8 default was quantized from."""
    verifier = FaceVerifier.from_folders(FLOAT_CARD, precision="float32", engine="torch", flip_tta=False)
    return embeddings(verifier, lfw_dir, names)


def test_openvino_float32_gives_torch_s_embeddings(lfw_dir, names, reference):
    verifier = FaceVerifier.from_folders(FLOAT_CARD, precision="float32", engine="openvino", flip_tta=False)
    assert float(np.abs(embeddings(verifier, lfw_dir, names) - reference).max()) <= 1e-5


def test_openvino_yunet_gives_torch_s_faces(data_dir: Path):
    meta = json.loads((data_dir / "reference" / "sface_vectors" / "meta.json").read_text())
    images = [to_array(load_image(data_dir / item["image"])) for item in meta["images"]]
    torch_faces = YuNet(engine="torch").detect(images)
    openvino_faces = YuNet(engine="openvino").detect(images)
    assert [len(faces) for faces in torch_faces] == [len(faces) for faces in openvino_faces]
    for ours, theirs in zip(openvino_faces, torch_faces):
        for a, b in zip(ours, theirs):
            assert np.abs(np.subtract(a.box, b.box)).max() <= 0.01
            assert np.abs(np.subtract(a.landmarks, b.landmarks)).max() <= 0.01
            assert abs(a.score - b.score) <= 1e-4


def test_the_int8_default_stays_close_to_its_float32_source(lfw_dir, names, reference):
    verifier = FaceVerifier.from_folders(DEFAULT_ENCODER_DIR)
    assert (verifier.engine, verifier.precision) == ("openvino", "int8")
    cosine = (embeddings(verifier, lfw_dir, names) * reference).sum(axis=1)
    assert cosine.min() >= 0.99, cosine.min()  # about 0.994 at worst, 0.998 on average


def test_the_int8_default_on_an_avx2_only_cpu_agrees_with_this_cpu_s(lfw_dir, names, tmp_path):
    """Measured under ONEDNN_MAX_CPU_ISA=AVX2 in a fresh process (the cap is read at load time)."""
    verifier = FaceVerifier.from_folders(DEFAULT_ENCODER_DIR)
    here = embeddings(verifier, lfw_dir, names)
    code = (
        "import sys, numpy as np; from pathlib import Path; "
        "from tests.integration.test_engine_parity import embeddings; "
        "from model.verify.pipeline import FaceVerifier; from model.paths import DEFAULT_ENCODER_DIR; "
        "np.save(sys.argv[1], embeddings(FaceVerifier.from_folders(DEFAULT_ENCODER_DIR), Path(sys.argv[2]), "
        "sys.argv[3:]))"
    )
    out = tmp_path / "avx2.npy"
    subprocess.run([sys.executable, "-c", code, str(out), str(lfw_dir), *names], cwd=REPO_ROOT, check=True,
                   env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}, capture_output=True)
    distance = np.linalg.norm(np.load(out) - here, axis=1)
    assert distance.max() <= 0.05, distance.max()  # about 0.02 between AMX and AVX2 int8 here
