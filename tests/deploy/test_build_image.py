"""The image's build, end to end without Docker: deploy/build_image.sh (the steps the Dockerfile
runs) builds the lean runtime into a temporary folder (its check step refuses torch there), then
`facever serve` from it must become ready and verify a real pair, without writing into the built
tree; and FACEVER_ENGINE=torch there must stop the service with a message that says what to install.

Slow (a fresh venv: about a minute), so it runs only with BUILD_IMAGE_TEST=1, as .ci/run sets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.server import built_runtime_environment, running_server

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
            env=os.environ,
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


def test_serves_from_the_built_runtime(built: Path, lfw_dir: Path, tmp_path: Path):
    before = tree(built)
    env = built_runtime_environment(built, tmp_path / "facever.sqlite3")
    # From "/", so nothing is importable from the checkout.
    with running_server(env, facever=built / "venv" / "bin" / "facever", cwd="/", inherit_environment=False,
                        ready_timeout_s=120) as server:
        first, second = ((lfw_dir / "images" / name).read_bytes() for name in PHOTOS)
        response = httpx.post(
            f"{server.base_url}/verify", files={"image1": ("1.jpg", first), "image2": ("2.jpg", second)}, timeout=60
        )
        assert response.status_code == 200, response.text
        assert response.json()["same"] is True
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.base_url}/health/ready").json()["storage"] != "ok":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.post(f"{server.base_url}/galleries", json={"id": "built"}).status_code == 201
    assert tree(built) == before  # serving wrote nothing: a read-only root filesystem suffices


def test_the_torch_engine_in_the_lean_runtime_says_what_to_install(built: Path, tmp_path: Path):
    assert not list((built / "weights").rglob("*.pt")), "torch's state files are of no use without torch"
    result = subprocess.run(
        [str(built / "venv" / "bin" / "python"), "-c",
         "from model.verify.pipeline import FaceVerifier; import sys; FaceVerifier.from_folders(sys.argv[1], engine='torch')",
         str(built / "weights" / "fused-dlib-sface-yunet-int8")],
        env=built_runtime_environment(built, tmp_path / "facever.sqlite3"), cwd="/", capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "the torch engine needs torch" in result.stderr and "facever[torch]" in result.stderr
