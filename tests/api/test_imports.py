"""The app imports no torch: settings, schemas, routes and the app itself load without it. Nor does
the serving path the lifespan builds (detectors, alignment, encoders, the OpenVINO engine and the
pipeline): torch is an optional extra (`facever[torch]`), for the torch engine, training, evaluation
and conversion (tests/integration/test_lean_runtime.py runs the real server and watches it)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

APP_MODULES = (
    "app.settings",
    "app.schemas.requests",
    "app.schemas.responses",
    "app.api.routes.verify",
    "app.api.routes.embed",
    "app.api.routes.health",
    "app.api.routes.info",
    "app.api.routes.metrics",
    "app.main",
)
TORCH_FREE_MODEL_MODULES = (
    "model.types",
    "model.card",
    "model.paths",
    "model.errors",
    "model.files",
    "model.distance",
    "model.images",
    "model.registry",
    "model.engines.cpu",
    "model.engines.precision",
    "model.engines.compile",
    "model.engines.openvino",
    "model.encoders",
    "model.encoders.inference",
    "model.faces.align",
    "model.faces.detectors",
    "model.faces.mtcnn",
    "model.faces.yunet",
    "model.faces.quality",
    "model.verify.pipeline",
    "model.evaluation.embeddings",
)


def first_importing_torch(modules: tuple[str, ...]) -> str:
    """The first of `modules` (imported in order, in a fresh interpreter) that brings torch in, or ''."""
    code = (
        "import importlib, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'torch' in sys.modules:\n"
        "        print(name)\n"
        "        break\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_app_loads_no_torch():
    assert first_importing_torch(APP_MODULES) == ""


def test_the_torch_free_model_modules_load_no_torch():
    assert first_importing_torch(TORCH_FREE_MODEL_MODULES) == ""


def test_the_check_sees_torch_where_it_is_imported():
    assert first_importing_torch(("model.paths", "model.engines.reference")) == "model.engines.reference"
