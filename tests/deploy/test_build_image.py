"""The image's build, end to end without Docker: deploy/build_image.sh (the steps the Dockerfile
runs) builds the runtime into a temporary folder, then `facever serve` from it must become ready
and verify a real pair, without writing into the built tree.

Slow (a fresh venv with torch: about a minute), so it runs only with BUILD_IMAGE_TEST=1, as
.ci/run sets. The torch wheel comes from pip's own configuration (TORCH_INDEX_URL empty): on the
developers' and CI's machines, the CPU wheel in pip's find-links, so nothing large is downloaded.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "deploy" / "build_image.sh"
PHOTOS = ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg")

pytestmark = [
    pytest.mark.data,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("BUILD_IMAGE_TEST") != "1", reason="slow: set BUILD_IMAGE_TEST=1 (CI does)"),
]


@pytest.fixture(scope="module")
def built() -> Iterator[Path]:
    prefix = Path(tempfile.mkdtemp(prefix="facever-image-"))
    prefix.chmod(0o755)  # the check step reads it as the image's non-root user where it can
    try:
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "all", str(prefix)],
            env={**os.environ, "TORCH_INDEX_URL": ""},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "check passed" in result.stdout
        yield prefix
    finally:
        shutil.rmtree(prefix)


def tree(folder: Path) -> dict[str, float]:
    return {str(path): path.stat().st_mtime for path in folder.rglob("*") if not path.is_symlink()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serves_from_the_built_runtime(built: Path, lfw_dir: Path):
    before = tree(built)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {  # as the image sets it, and nothing of this checkout's environment
        "PATH": f"{built / 'venv' / 'bin'}:/usr/bin:/bin",
        "HOME": "/nonexistent",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MALLOC_ARENA_MAX": "2",
        "FACEVER_WEIGHTS_DIR": str(built / "weights" / "fused-dlib-sface-yunet"),
        "FACEVER_DETECTORS_DIR": str(built / "weights"),
    }
    server = subprocess.Popen(
        [str(built / "venv" / "bin" / "facever"), "serve", "--port", str(port)],
        cwd="/",  # nothing importable from the checkout
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"facever serve exited: {server.stderr.read().decode()[-3000:]}"
            assert time.monotonic() < deadline, "not ready within 120 s"
            try:
                if httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        first, second = ((lfw_dir / "images" / name).read_bytes() for name in PHOTOS)
        response = httpx.post(
            f"{base_url}/verify", files={"image1": ("1.jpg", first), "image2": ("2.jpg", second)}, timeout=60
        )
        assert response.status_code == 200, response.text
        assert response.json()["same"] is True
    finally:
        server.terminate()
        server.wait(30)
    assert tree(built) == before  # serving wrote nothing: a read-only root filesystem suffices
