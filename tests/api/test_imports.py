"""The app imports no torch: settings, schemas, routes and the app itself load without it, and torch
comes in only when the lifespan builds the verifier."""

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


def test_importing_the_app_loads_no_torch():
    code = f"import sys; import {', '.join(APP_MODULES)}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", result.stderr
