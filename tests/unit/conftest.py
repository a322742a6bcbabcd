"""The unit tier runs with no server and no dataset: a test here that asks for the datasets or a
PostgreSQL server is an error at collection (such tests belong in tests/integration)."""

from __future__ import annotations

import pytest

NOT_IN_THIS_TIER = {"data_dir", "lfw_dir", "postgres_server", "postgres_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needs = NOT_IN_THIS_TIER & set(getattr(item, "fixturenames", ()))
        if needs and "tests/unit/" in item.nodeid:
            raise pytest.UsageError(f"{item.nodeid} needs {', '.join(sorted(needs))}: move it to tests/integration")
