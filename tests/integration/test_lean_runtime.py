"""The serving path never imports torch: the real server, started as `make serve` starts it, on the
shipped weights, answers /verify on real faces (YuNet) and on a photo where YuNet finds nothing (so
MTCNN runs too), with torch installed beside it, and never loads it: no `torch` module imported
(Python's own import log, -X importtime) and no libtorch or libc10 in its memory maps."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.server import HOST, free_port, wait_ready
from tests.integration.real_service import ENCODER_DIR, skip_unless_shipped_model

pytestmark = pytest.mark.data

PAIR = ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg")
TORCH_LIBRARIES = ("libtorch", "libc10")


def imported_modules(import_log: str) -> set[str]:
    """The top-level packages -X importtime reports imported ('import time: self | cumulative | name')."""
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in import_log.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


def blank_photo() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_server_answers_without_ever_loading_torch(lfw_dir: Path, tmp_path: Path):
    skip_unless_shipped_model()
    pytest.importorskip("torch")  # installed here, so that not loading it shows something
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    environment = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1",
                   "FACEVER_WEIGHTS_DIR": str(ENCODER_DIR), "FACEVER_STORAGE_URL": f"sqlite:///{tmp_path / 'db'}"}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([str(Path(sys.executable).with_name("facever")), "serve", "--host", HOST,
                                    "--port", str(port)], env=environment, stdout=log, stderr=log)
        try:
            wait_ready(process, base_url, 180)
            photos = [(lfw_dir / "images" / name).read_bytes() for name in PAIR]
            same = httpx.post(f"{base_url}/verify", timeout=60,
                              files={"image1": ("a.jpg", photos[0]), "image2": ("b.jpg", photos[1])})
            assert same.status_code == 200 and same.json()["same"] is True, same.text
            blank = httpx.post(f"{base_url}/verify", timeout=60,
                               files={"image1": ("a.png", blank_photo()), "image2": ("b.jpg", photos[1])})
            assert blank.status_code == 422 and blank.json()["error"]["code"] == "no_face_detected", blank.text
            maps = Path(f"/proc/{process.pid}/maps").read_text()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        log.seek(0)
        import_log = log.read().decode(errors="replace")
    assert {"app", "model", "openvino", "numpy"} <= imported_modules(import_log)  # the log is what it claims
    assert "torch" not in imported_modules(import_log)
    assert not [line for line in maps.splitlines() if any(name in line for name in TORCH_LIBRARIES)]
