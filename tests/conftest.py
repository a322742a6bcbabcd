"""Shared fixtures. Real-face tests read ../shared/data (or FACEVER_DATA_DIR) and skip without it.

Markers: every test that needs the datasets (through the `data_dir` fixture) is marked `data`, so
`pytest -m "not data"` runs without them; the longest runs are marked `slow` (`-m "not slow"`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from model.paths import DEFAULT_DATA_DIR as DATA_DIR  # FACEVER_DATA_DIR, or ../shared/data
from model.paths import REPO_ROOT, WEIGHTS_DIR

__all__ = ["DATA_DIR", "REPO_ROOT", "WEIGHTS_DIR"]  # what tests import from here
# The PostgreSQL fixtures (postgres_server, postgres_url) and the server behind them.
pytest_plugins = ["tests.support.postgres"]


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
