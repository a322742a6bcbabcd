"""Shared fixtures. Real-face tests read ../shared/data (or FACEVER_DATA_DIR) and skip without it."""

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
