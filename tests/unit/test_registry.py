"""The one registry of named implementations (encoders, losses, miners)."""

from __future__ import annotations

import sys

import pytest

from model.registry import Registry


def test_build_by_name_register_once_and_name_the_known_on_a_miss():
    shapes: Registry[type] = Registry("shape", {"square": lambda side: side * side})
    assert shapes.build("square", side=3) == 9

    @shapes.register("line")
    def line(length):
        return length

    assert "line" in shapes and list(shapes) == ["line", "square"]
    with pytest.raises(ValueError, match="shape 'line' is registered twice"):
        shapes.register("line")(line)
    with pytest.raises(ValueError, match=r"unknown shape 'circle'; known: \['line', 'square'\]"):
        shapes["circle"]


LAZY: Registry[type] = Registry("shape", modules={"hexagon": "facever_test_hexagon"})


def test_a_module_named_for_an_entry_is_imported_only_when_it_is_asked_for(tmp_path, monkeypatch):
    (tmp_path / "facever_test_hexagon.py").write_text(
        "from tests.unit.test_registry import LAZY\n\n@LAZY.register('hexagon')\nclass Hexagon:\n    sides = 6\n"
    )
    monkeypatch.syspath_prepend(tmp_path)
    assert "hexagon" not in LAZY and list(LAZY) == ["hexagon"]
    assert "facever_test_hexagon" not in sys.modules
    assert LAZY["hexagon"].sides == 6  # imported on first use, and registered by that import
    assert "facever_test_hexagon" in sys.modules
    monkeypatch.delitem(sys.modules, "facever_test_hexagon")
