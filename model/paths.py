"""Where the checkout keeps things; torch-free, so the service's settings can import it cheaply."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = REPO_ROOT / "weights"
# The shipped default: chosen under the LFW View 2 protocol (README, Accuracy).
DEFAULT_ENCODER_DIR = WEIGHTS_DIR / "fused-dlib-sface-yunet"
