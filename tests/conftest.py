"""Shared fixtures. Real-face tests read ../shared/data (or FACEVER_DATA_DIR) and skip without it.

Markers: every test that needs the datasets (through the `data_dir` fixture) is marked `data`, so
`pytest -m "not data"` runs without them; the longest runs are marked `slow` (`-m "not slow"`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("FACEVER_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
WEIGHTS_DIR = REPO_ROOT / "weights"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "lfw" / "images").is_dir():
        pytest.skip(f"face datasets not found at {DATA_DIR} (set FACEVER_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def lfw_dir(data_dir: Path) -> Path:
    return data_dir / "lfw"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)
