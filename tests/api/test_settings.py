"""Settings come from FACEVER_* variables, are validated once, and cannot change afterwards."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from app.settings import Settings
from tests.conftest import REPO_ROOT


def test_defaults():
    settings = Settings()
    assert settings.weights_dir.parts[-2:] == ("weights", "fused-dlib-sface-yunet-int8")
    assert settings.face_policy == "subject" and settings.flip_tta is None
    assert settings.max_upload_bytes == 10 * 1024 * 1024 and settings.max_image_pixels == 40_000_000
    assert settings.api_keys == () and settings.cors_origins == ()
    assert (settings.max_concurrency, settings.max_queue, settings.request_timeout_s) == (1, 8, 10.0)


def test_environment(monkeypatch):
    monkeypatch.setenv("FACEVER_API_KEYS", " key-alpha, key-beta ,")
    monkeypatch.setenv("FACEVER_CORS_ORIGINS", "https://a.example")
    monkeypatch.setenv("FACEVER_FLIP_TTA", "true")
    monkeypatch.setenv("FACEVER_FACE_POLICY", "reject")
    monkeypatch.setenv("FACEVER_LOG_LEVEL", "debug")
    monkeypatch.setenv("FACEVER_INFERENCE_THREADS", "")  # empty = unset
    settings = Settings()
    assert settings.api_keys == ("key-alpha", "key-beta") and settings.cors_origins == ("https://a.example",)
    assert settings.flip_tta is True and settings.face_policy == "reject" and settings.log_level == "DEBUG"
    assert settings.inference_threads is None
    assert "key-alpha" not in repr(settings)  # keys stay out of logs


@pytest.mark.parametrize(
    ("name", "value"),
    [("FACEVER_FACE_POLICY", "smallest"), ("FACEVER_MAX_CONCURRENCY", "0"), ("FACEVER_REQUEST_TIMEOUT_S", "-1")],
)
def test_invalid_values_fail_at_load(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(pydantic.ValidationError):
        Settings()


def test_frozen_and_strict_about_names():
    with pytest.raises(pydantic.ValidationError):
        Settings().max_queue = 3
    with pytest.raises(pydantic.ValidationError):
        Settings(max_concurency=3)


def test_inference_threads_share_the_usable_cores_among_concurrent_inferences(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert Settings(max_concurrency=2).threads_per_inference == 4
    assert Settings(max_concurrency=16).threads_per_inference == 1
    assert Settings(max_concurrency=2, inference_threads=3).threads_per_inference == 3


@pytest.mark.parametrize("name", ["FACEVER_INFERENCE_THREADS", "FACEVER_TORCH_THREADS"])
def test_inference_threads_under_its_name_and_its_old_one(monkeypatch, name):
    monkeypatch.setenv(name, "3")
    assert Settings().inference_threads == 3


def readme_configuration() -> dict[str, str]:
    """Variable -> the default cell of the README's configuration table."""
    text = (REPO_ROOT / "README.md").read_text()
    table = text[text.index("| variable | default | meaning |"):].split("\n\n", 1)[0]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    return {cells[0].strip("| `"): cells[1] for cells in rows}


def documented(value: object) -> str:
    """A default as the table writes it: code for a value, a path relative to the checkout."""
    if isinstance(value, Path):
        return f"`{value.relative_to(REPO_ROOT)}`"
    if value == ():
        return "empty"
    return f"`{value}`"


def test_the_readme_table_gives_every_setting_with_the_code_s_default():
    table = readme_configuration()
    fields = {f"FACEVER_{name.upper()}": info.default for name, info in Settings.model_fields.items()}
    assert set(table) == set(fields)
    for variable, default in fields.items():
        if default is None:  # the behaviour of leaving it unset is described
            assert table[variable].startswith("unset:"), variable
        else:
            assert table[variable].split(" (")[0] == documented(default), variable


def test_a_bare_card_name_is_a_folder_beside_the_detectors(tmp_path):
    (tmp_path / "sface-2021dec-yunet-int8").mkdir()
    named = Settings(weights_dir="sface-2021dec-yunet-int8", detectors_dir=tmp_path)
    assert named.encoder_dir == tmp_path / "sface-2021dec-yunet-int8"
    folder = Settings(weights_dir=tmp_path / "sface-2021dec-yunet-int8", detectors_dir="/elsewhere")
    assert folder.encoder_dir == tmp_path / "sface-2021dec-yunet-int8"
