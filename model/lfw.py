"""Labeled Faces in the Wild: the official pair lists and the identity folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from model.paths import REPO_ROOT

DEFAULT_DATA_DIR = Path(os.environ.get("FACEVER_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@dataclass(frozen=True)
class Pair:
    """One protocol pair: image paths relative to `lfw/images`, same identity or not, its fold."""

    first: str
    second: str
    same: bool
    fold: int


def image_name(person: str, number: int) -> str:
    return f"{person}/{person}_{number:04d}.jpg"


def read_pairs(path: str | Path) -> list[Pair]:
    """Parse `pairs.txt` (View 2: header `10 300`) or a View 1 file (header: one count).

    View 2 repeats per fold `n` same lines then `n` different lines; View 1 is a single fold.
    """
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    folds, per_kind = (int(header[0]), int(header[1])) if len(header) == 2 else (1, int(header[0]))
    if len(rows) != folds * per_kind * 2:
        raise ValueError(f"{path}: expected {folds * per_kind * 2} pairs, found {len(rows)}")
    pairs = []
    for index, row in enumerate(rows):
        fold = index // (2 * per_kind)
        if len(row) == 3:
            person, i, j = row
            pairs.append(Pair(image_name(person, int(i)), image_name(person, int(j)), True, fold))
        elif len(row) == 4:
            first, i, second, j = row
            pairs.append(Pair(image_name(first, int(i)), image_name(second, int(j)), False, fold))
        else:
            raise ValueError(f"{path}: malformed line {index + 2}: {row}")
    return pairs


def pair_people(pairs: list[Pair]) -> set[str]:
    """The people named in `pairs`: an encoder scored on these pairs must never have trained on them."""
    return {path.split("/")[0] for pair in pairs for path in (pair.first, pair.second)}


def identity_images(images_dir: str | Path) -> dict[str, list[str]]:
    """Identity -> sorted image paths relative to `images_dir`, one sub-folder per identity."""
    images_dir = Path(images_dir)
    return {
        person.name: sorted(f"{person.name}/{image.name}" for image in person.iterdir() if image.is_file())
        for person in sorted(images_dir.iterdir())
        if person.is_dir()
    }
