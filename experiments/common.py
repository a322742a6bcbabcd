"""What every study's command line shares: where the datasets are, how many torch threads, and (for
those that train) where runs go and whether to retrain."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from model.paths import DEFAULT_DATA_DIR
from model.training.trainer import RUNS_DIR


def study_parser(doc: str, *, threads: int = 2, training_runs: bool = False) -> argparse.ArgumentParser:
    """A parser described by the study's docstring, with --data and --threads (and --runs,
    --retrain where the study trains)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="folder holding the datasets")
    parser.add_argument("--threads", type=int, default=threads, help="torch threads")
    if training_runs:
        parser.add_argument("--runs", type=Path, default=RUNS_DIR, help="where each training run goes")
        parser.add_argument("--retrain", action="store_true", help="train even where a finished run exists")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args
