"""The committed MTCNN weights are the files weights/mtcnn/SHA256SUMS names."""

from __future__ import annotations

import hashlib

from model.convert.mtcnn import NETWORK_FILES
from tests.conftest import WEIGHTS_DIR

MTCNN_DIR = WEIGHTS_DIR / "mtcnn"


def test_sha256sums_match_the_files():
    listed = {}
    for line in (MTCNN_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        listed[name] = digest
    assert sorted(listed) == sorted(NETWORK_FILES)
    for name, digest in listed.items():
        assert hashlib.sha256((MTCNN_DIR / name).read_bytes()).hexdigest() == digest, name


def test_licence_and_provenance_are_present():
    assert "MIT License" in (MTCNN_DIR / "LICENSE").read_text()
    assert "facenet-pytorch==2.6.0" in (MTCNN_DIR / "README.md").read_text()
