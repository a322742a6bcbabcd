"""Where the checkout keeps things; torch-free, so the service's settings can import it cheaply."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = REPO_ROOT / "weights"
# The shipped default: the fused encoder quantized to int8, on the OpenVINO engine (docs/accuracy.md, docs/performance.md).
DEFAULT_ENCODER_DIR = WEIGHTS_DIR / "fused-dlib-sface-yunet-int8"
# The face datasets (read-only, never copied into the checkout): ../shared/data beside it.
DEFAULT_DATA_DIR = Path(os.environ.get("FACEVER_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
# Figures the benches, experiments and evaluation write (JSON, PNG), committed with the code.
REPORTS_DIR = REPO_ROOT / "bench" / "results"
# Detections, embeddings and chips computed from the datasets, each keyed on what made it.
CACHE_DIR = REPO_ROOT / "cache"
