"""Fetch MTCNN's pretrained P-, R- and O-Net weights from the facenet-pytorch wheel on PyPI.

Only the three state dicts are taken from the wheel (our detector is our own code, so the package
itself is never installed). The wheel is pinned by version and sha256, so what lands in
weights/mtcnn is reproducible and its provenance is recorded next to it.

    python -m model.fetch_mtcnn [--dest weights/mtcnn]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "facenet-pytorch"
VERSION = "2.6.0"
WHEEL_NAME = "facenet_pytorch-2.6.0-py3-none-any.whl"
WHEEL_SHA256 = "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
NETWORK_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
WHEEL_DATA_DIR = "facenet_pytorch/data"
WHEEL_LICENSE = "facenet_pytorch-2.6.0.dist-info/LICENSE.md"
DEFAULT_DEST = Path(__file__).resolve().parents[1] / "weights" / "mtcnn"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def download_wheel(directory: Path) -> Path:
    """Download the pinned wheel (no dependencies) with pip and check its sha256."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--only-binary", ":all:", f"{PACKAGE}=={VERSION}", "-d", str(directory),
        ],
        check=True,
    )
    wheel = directory / WHEEL_NAME
    digest = sha256_of(wheel)
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{WHEEL_NAME} has sha256 {digest}, expected {WHEEL_SHA256}")
    return wheel


def readme_text() -> str:
    return f"""# MTCNN weights

`pnet.pt`, `rnet.pt`, `onet.pt`: PyTorch state dicts of MTCNN's three networks (Zhang et al.,
"Joint Face Detection and Alignment using Multi-task Cascaded Convolutional Networks", 2016):
the original models by way of davidsandberg/facenet's TensorFlow port, converted to PyTorch and
shipped by facenet-pytorch. Loaded by `model/faces/mtcnn.py`; `SHA256SUMS` is checked by
`tests/unit/test_mtcnn_weights.py`.

- source: PyPI wheel `{WHEEL_NAME}` ({PACKAGE}=={VERSION}), files `{WHEEL_DATA_DIR}/*.pt`
- wheel sha256: `{WHEEL_SHA256}`
- licence: MIT, facenet-pytorch's notice in `LICENSE` (copied from the wheel's dist-info)
- regenerate: `python -m model.fetch_mtcnn`
"""


def extract(wheel: Path, dest: Path) -> None:
    """Write the networks, their SHA256SUMS, the licence and a provenance README into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in NETWORK_FILES:
            (dest / name).write_bytes(archive.read(f"{WHEEL_DATA_DIR}/{name}"))
        (dest / "LICENSE").write_bytes(archive.read(WHEEL_LICENSE))
    sums = "".join(f"{sha256_of(dest / name)}  {name}\n" for name in NETWORK_FILES)
    (dest / "SHA256SUMS").write_text(sums)
    (dest / "README.md").write_text(readme_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="output folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        extract(download_wheel(Path(tmp)), args.dest)
    print(f"wrote {', '.join(NETWORK_FILES)}, SHA256SUMS, LICENSE, README.md to {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
