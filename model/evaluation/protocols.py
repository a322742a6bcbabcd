"""Evaluation protocols: LFW's official pair lists (View 2 for reporting, View 1 for choosing), the
identity folders, identity-disjoint halves, every pair of a set of identities, and how each is scored.

Convention everywhere: a pair is "same" when its distance is <= the threshold (model.evaluation.metrics).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.distance import distance_matrix, pair_distances
from model.evaluation import metrics

MAX_IMAGES_PER_IDENTITY = 20  # so a few heavily photographed people do not dominate the pairs


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


def development_pairs(data_dir: Path) -> tuple[list[Pair], list[str], np.ndarray]:
    """LFW View 1 (pairsDevTrain + pairsDevTest, 3,200 pairs), where settings are chosen: the
    pairs, the images they name (sorted) and which pairs are the same person."""
    lfw = data_dir / "lfw"
    pairs = read_pairs(lfw / "pairsDevTrain.txt") + read_pairs(lfw / "pairsDevTest.txt")
    paths = sorted({p.first for p in pairs} | {p.second for p in pairs})
    return pairs, paths, np.array([p.same for p in pairs])


def protocol_distances(embeddings: np.ndarray, index: dict[str, int], pairs: list[Pair]) -> np.ndarray:
    """The distance of each protocol pair, `index` giving each image's row in `embeddings`."""
    first = embeddings[[index[p.first] for p in pairs]]
    second = embeddings[[index[p.second] for p in pairs]]
    return pair_distances(first, second)


def score_view2(distances: np.ndarray, is_same: np.ndarray, folds: np.ndarray) -> dict:
    """LFW View 2: k-fold accuracy (threshold chosen on the other folds), and over all pairs AUC,
    EER and TAR at FAR 1e-3 and 1e-2."""
    kfold = metrics.kfold_accuracy(distances, is_same, folds)
    eer, eer_threshold = metrics.equal_error_rate(distances, is_same)
    tar_1e3, threshold_1e3 = metrics.tar_at_far(distances, is_same, 1e-3)
    tar_1e2, threshold_1e2 = metrics.tar_at_far(distances, is_same, 1e-2)
    return {
        "accuracy_mean": kfold.mean,
        "accuracy_std": kfold.std,
        "fold_accuracies": kfold.accuracies,
        "fold_thresholds": kfold.thresholds,
        "auc": metrics.roc_auc(distances, is_same),
        "eer": eer,
        "eer_threshold": eer_threshold,
        "tar_at_far_1e-3": tar_1e3,
        "threshold_at_far_1e-3": threshold_1e3,
        "tar_at_far_1e-2": tar_1e2,
        "threshold_at_far_1e-2": threshold_1e2,
    }


def score_development(distances: np.ndarray, is_same: np.ndarray) -> dict:
    """One development set (LFW View 1) for choosing settings: best balanced accuracy on the pairs
    themselves, EER, AUC and TAR at FAR 1e-3. Never used to report a model's accuracy."""
    threshold = metrics.best_accuracy_threshold(distances, is_same)
    return {
        "accuracy": metrics.accuracy(distances, is_same, threshold),
        "eer": metrics.equal_error_rate(distances, is_same)[0],
        "auc": metrics.roc_auc(distances, is_same),
        "tar_at_far_1e-3": metrics.tar_at_far(distances, is_same, 1e-3)[0],
    }


@dataclass(frozen=True)
class PairDistances:
    """The distances of every genuine (same identity) and every impostor pair of a set of identities."""

    genuine: np.ndarray
    impostor: np.ndarray

    @property
    def all(self) -> tuple[np.ndarray, np.ndarray]:
        distances = np.concatenate([self.genuine, self.impostor])
        is_same = np.concatenate([np.ones(self.genuine.size, bool), np.zeros(self.impostor.size, bool)])
        return distances, is_same

    def rates(self, threshold: float) -> dict[str, float]:
        return {
            "far": float(np.mean(self.impostor <= threshold)),
            "frr": float(np.mean(self.genuine > threshold)),
        }


def all_pair_distances(embeddings: np.ndarray, identities: dict[str, list[int]] | dict[int, list[int]]) -> PairDistances:
    """Every within-identity and every cross-identity pair of the images `identities` lists (rows
    of `embeddings`), from one Gram matrix in float64."""
    indices = np.concatenate([np.array(v) for v in identities.values()])
    labels = np.concatenate([np.full(len(v), k) for k, v in enumerate(identities.values())])
    vectors = np.asarray(embeddings[indices], np.float64)
    distances = distance_matrix(vectors).astype(np.float32)
    upper = np.triu(np.ones_like(distances, dtype=bool), k=1)
    same = labels[:, None] == labels[None, :]
    return PairDistances(genuine=distances[upper & same], impostor=distances[upper & ~same])


def split_identities(paths: list[str]) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Identity -> image indices (at most MAX_IMAGES_PER_IDENTITY), split in two by name hash: the
    calibration's 'choose' and 'held-out' halves, which share no person."""
    by_identity: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        by_identity.setdefault(path.split("/")[0], []).append(i)
    halves: tuple[dict[str, list[int]], dict[str, list[int]]] = ({}, {})
    for name, indices in by_identity.items():
        half = hashlib.sha256(name.encode()).digest()[0] % 2
        halves[half][name] = indices[:MAX_IMAGES_PER_IDENTITY]
    return halves
