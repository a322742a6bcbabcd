"""The service's own malloc settings apply on glibc, which every supported platform runs."""

import platform

import pytest

from app.allocator import tune_allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's settings are glibc's")
def test_the_allocator_settings_apply_on_glibc():
    assert tune_allocator() is True
