"""Fetch MTCNN's pretrained P-, R- and O-Net weights from the facenet-pytorch wheel on PyPI, and
write each network beside them as an OpenVINO model.

Only the three state dicts are taken from the wheel (our detector is our own code, so the package
itself is never installed). The wheel is pinned by version and sha256, so what lands in
weights/mtcnn is reproducible and its provenance is recorded next to it. The OpenVINO models are
what the openvino engine loads as they are, so serving converts nothing and needs no torch.

    facever fetch-mtcnn [--wheel PATH] [--out weights/mtcnn]
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from model.convert.base import Wheel, converter_main, wheel_members, write_sha256sums
from model.engines.conversion import save_converted
from model.engines.reference import load_state
from model.faces import mtcnn
from model.faces.networks import mtcnn as networks
from model.files import write_atomic
from model.paths import WEIGHTS_DIR

SOURCE = Wheel(
    package="facenet-pytorch",
    version="2.6.0",
    filename="facenet_pytorch-2.6.0-py3-none-any.whl",
    sha256="ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
)
NETWORK_FILES = mtcnn.WEIGHTS_FILES
WHEEL_DATA_DIR = "facenet_pytorch/data"
WHEEL_LICENSE = "facenet_pytorch-2.6.0.dist-info/LICENSE.md"
DEFAULT_OUT = WEIGHTS_DIR / "mtcnn"


def readme_text() -> str:
    return f"""# MTCNN weights

`pnet.pt`, `rnet.pt`, `onet.pt`: PyTorch state dicts of MTCNN's three networks (Zhang et al.,
"Joint Face Detection and Alignment using Multi-task Cascaded Convolutional Networks", 2016):
the original models by way of davidsandberg/facenet's TensorFlow port, converted to PyTorch and
shipped by facenet-pytorch. `pnet.xml`, `rnet.xml`, `onet.xml` (weights in the `.bin` beside each):
the same networks as OpenVINO models (float32), converted from these state dicts, which the
openvino engine loads as they are. Loaded by `model/faces/mtcnn.py`; `SHA256SUMS` is checked by
`tests/integration/faces/test_mtcnn_weights.py`.

- source: PyPI wheel `{SOURCE.filename}` ({SOURCE.package}=={SOURCE.version}), files `{WHEEL_DATA_DIR}/*.pt`
- wheel sha256: `{SOURCE.sha256}`
- licence: MIT, facenet-pytorch's notice in `LICENSE` (copied from the wheel's dist-info)
- regenerate: `facever fetch-mtcnn`
"""


def convert(wheel: bytes, out_dir: Path) -> int:
    """Write the networks from the wheel's bytes, their SHA256SUMS, the licence and a provenance
    README into `out_dir`; returns the parameter count."""
    members = [f"{WHEEL_DATA_DIR}/{name}" for name in NETWORK_FILES]
    *networks, licence = wheel_members(wheel, [*members, WHEEL_LICENSE], SOURCE.filename)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in zip(NETWORK_FILES, networks):
        write_atomic(out_dir / name, data)
    write_atomic(out_dir / "LICENSE", licence)
    compiled = write_compiled(out_dir)
    write_sha256sums(out_dir, (*NETWORK_FILES, *compiled))
    write_atomic(out_dir / "README.md", readme_text().encode())
    states = [torch.load(io.BytesIO(data), map_location="cpu", weights_only=True) for data in networks]
    return sum(value.numel() for state in states for value in state.values())


def write_compiled(out_dir: Path) -> list[str]:
    """Each network in `out_dir` saved beside its weights as an OpenVINO model; the files written."""
    written = []
    for cls, weights, compiled, shape, dynamic in zip(
        mtcnn.NETWORKS.values(), mtcnn.WEIGHTS_FILES, mtcnn.COMPILED_FILES, mtcnn.EXAMPLE_INPUTS, mtcnn.DYNAMIC_AXES
    ):
        network = load_state(getattr(networks, cls)(), out_dir / weights)
        save_converted(network, [torch.zeros(shape)], out_dir / compiled, dynamic)
        written += [compiled, Path(compiled).with_suffix(".bin").name]
    return written


COMMAND = "fetch-mtcnn"
LOCAL_OPTION = "--wheel"
main = converter_main(__name__)


if __name__ == "__main__":
    raise SystemExit(main())
