"""The arguments every calibration task takes, and the command line it records beside its figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.paths import DEFAULT_DATA_DIR, DEFAULT_ENCODER_DIR, REPORTS_DIR


def calibration_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_ENCODER_DIR, help="encoder weights folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="folder holding lfw/")
    parser.add_argument("--reports", type=Path, default=REPORTS_DIR, help="where the JSON goes")
    parser.add_argument("--threads", type=int, default=2, help="each inference's threads")
    return parser


def command_line(prog: str, argv: list[str] | None) -> str:
    """`prog` and its arguments as given, for the card's `command` fields."""
    return " ".join([prog, *(sys.argv[1:] if argv is None else argv)])
