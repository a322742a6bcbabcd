"""This test process's resident memory, for the tests that bound its growth (soak, photo sizes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

needs_proc = pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc for the RSS")


def rss_bytes() -> int:
    """This process's resident set size, as the kernel counts it now (not the peak)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")
