"""Fetch MTCNN's pretrained P-, R- and O-Net weights from the facenet-pytorch wheel on PyPI.

Only the three state dicts are taken from the wheel (our detector is our own code, so the package
itself is never installed). The wheel is pinned by version and sha256, so what lands in
weights/mtcnn is reproducible and its provenance is recorded next to it.

    facever fetch-mtcnn [--dest weights/mtcnn]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from model.convert.base import read_from_wheel
from model.files import write_atomic
from model.paths import WEIGHTS_DIR

PACKAGE = "facenet-pytorch"
VERSION = "2.6.0"
WHEEL_NAME = "facenet_pytorch-2.6.0-py3-none-any.whl"
WHEEL_SHA256 = "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
NETWORK_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
WHEEL_DATA_DIR = "facenet_pytorch/data"
WHEEL_LICENSE = "facenet_pytorch-2.6.0.dist-info/LICENSE.md"
DEFAULT_DEST = WEIGHTS_DIR / "mtcnn"


def readme_text() -> str:
    return f"""# MTCNN weights

`pnet.pt`, `rnet.pt`, `onet.pt`: PyTorch state dicts of MTCNN's three networks (Zhang et al.,
"Joint Face Detection and Alignment using Multi-task Cascaded Convolutional Networks", 2016):
the original models by way of davidsandberg/facenet's TensorFlow port, converted to PyTorch and
shipped by facenet-pytorch. Loaded by `model/faces/mtcnn.py`; `SHA256SUMS` is checked by
`tests/unit/faces/test_mtcnn_weights.py`.

- source: PyPI wheel `{WHEEL_NAME}` ({PACKAGE}=={VERSION}), files `{WHEEL_DATA_DIR}/*.pt`
- wheel sha256: `{WHEEL_SHA256}`
- licence: MIT, facenet-pytorch's notice in `LICENSE` (copied from the wheel's dist-info)
- regenerate: `facever fetch-mtcnn`
"""


def fetch(dest: Path) -> None:
    """Write the networks, their SHA256SUMS, the licence and a provenance README into `dest`."""
    members = [f"{WHEEL_DATA_DIR}/{name}" for name in NETWORK_FILES]
    *networks, licence = read_from_wheel(PACKAGE, VERSION, [*members, WHEEL_LICENSE], wheel_sha256=WHEEL_SHA256)
    dest.mkdir(parents=True, exist_ok=True)
    for name, data in zip(NETWORK_FILES, networks):
        write_atomic(dest / name, data)
    write_atomic(dest / "LICENSE", licence)
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in zip(NETWORK_FILES, networks))
    write_atomic(dest / "SHA256SUMS", sums.encode())
    write_atomic(dest / "README.md", readme_text().encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facever fetch-mtcnn", description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="output folder")
    args = parser.parse_args(argv)
    fetch(args.dest)
    print(f"wrote {', '.join(NETWORK_FILES)}, SHA256SUMS, LICENSE, README.md to {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
