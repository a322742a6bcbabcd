"""1:N search of a gallery: the subjects' centroids held as one matrix per gallery and model, exact;
or the database's own index where it has one (PostgreSQL with pgvector: app.storage.postgres).
It lives with the storage it caches; the search service (app.services.search) reads it.

The matrix is checked against the gallery's revision (which every template write in the database
moves on) at the start of every search, and brought up to it when it differs: a search never
answers from a gallery older than the writes answered before it began, whichever replica made
them. Each write logs the subjects it changed, so the matrix is patched with theirs (a second at
10^6 templates, where reading the whole gallery takes about thirty); it is read whole where the log
cannot tell (bench/search_speed.py). A subject's score is its centroid's distance (the card's subject
rule, centroid), its threshold the one that holds the gallery's FPIR at the target for its size and
its number of templates (model.verify.open_set).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from app.storage.base import Candidate, GalleryTemplates, Storage, mixed_dimensions
from model.types import EmbeddingModel


@dataclass(frozen=True)
class GalleryMatrix:
    created_at: float
    revision: int
    subjects: np.ndarray  # (S,) ids
    counts: np.ndarray  # (S,) templates of each
    centroids: np.ndarray  # (S, dim) float32, unit length


def gallery_matrix(templates: GalleryTemplates) -> GalleryMatrix:
    """Each subject's templates (rows grouped by subject id, as the storage gives them) averaged
    and normalised."""
    if not templates.subject_ids:
        return GalleryMatrix(templates.created_at, templates.revision, np.array([], dtype=object),
                             np.array([], dtype=np.int64), np.zeros((0, 0), np.float32))
    ids = np.array(templates.subject_ids, dtype=object)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    sums = np.add.reduceat(templates.embeddings.astype(np.float64), starts, axis=0)
    centroids = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
    return GalleryMatrix(templates.created_at, templates.revision, ids[starts], np.diff(np.r_[starts, len(ids)]),
                         centroids)


def patched(held: GalleryMatrix, changes: GalleryTemplates) -> GalleryMatrix:
    """`held` with the changed subjects' rows replaced by their centroids now, or dropped where they
    have no templates of the model left. A new matrix: searches still reading `held` are unaffected."""
    fresh = gallery_matrix(changes)
    changed = set(changes.changed or ())
    keep = np.fromiter((subject not in changed for subject in held.subjects), bool, len(held.subjects))
    if not keep.any():
        return fresh
    if len(fresh.subjects) and fresh.centroids.shape[1] != held.centroids.shape[1]:
        raise mixed_dimensions({fresh.centroids.shape[1], held.centroids.shape[1]})
    return GalleryMatrix(changes.created_at, changes.revision,
                         np.concatenate([held.subjects[keep], fresh.subjects]),
                         np.concatenate([held.counts[keep], fresh.counts]),
                         np.concatenate([held.centroids[keep], fresh.centroids.reshape(-1, held.centroids.shape[1])]))


class SearchIndex:
    """The galleries' matrices, by (gallery, model), brought up to their revision at each search."""

    def __init__(self) -> None:
        self._matrices: dict[tuple, GalleryMatrix] = {}
        self._lock = threading.Lock()

    def matrix(self, storage: Storage, gallery_id: str, model: EmbeddingModel) -> GalleryMatrix:
        key = (gallery_id, *model.space)
        revision = storage.gallery_revision(gallery_id)
        held = self._matrices.get(key)
        if held is not None and held.revision == revision:
            return held
        with self._lock:  # one update at a time; a search that waited finds it done
            held = self._matrices.get(key)
            if held is None or held.revision != revision:
                changes = (storage.gallery_changes(gallery_id, model, held.created_at, held.revision)
                           if held is not None else None)
                held = patched(held, changes) if changes is not None else \
                    gallery_matrix(storage.gallery_templates(gallery_id, model))
                self._matrices[key] = held
        return held

    def search(self, storage: Storage, gallery_id: str, model: EmbeddingModel, probe: np.ndarray,
               top: int) -> tuple[int, list[Candidate]]:
        """The gallery's size (subjects with templates of `model`) and its `top` nearest subjects,
        nearest first: by the database's own index where it has one (pgvector), else exactly here."""
        found = storage.nearest(gallery_id, model, probe, top)
        if found is not None:
            return found
        held = self.matrix(storage, gallery_id, model)
        size = len(held.subjects)
        if not size:
            return 0, []
        similarity = held.centroids @ np.asarray(probe, np.float32)
        top = min(top, size)
        nearest = np.argpartition(-similarity, top - 1)[:top]
        nearest = nearest[np.argsort(-similarity[nearest], kind="stable")]
        scores = np.sqrt(np.clip(2.0 - 2.0 * similarity[nearest].astype(np.float64), 0.0, 4.0))
        return size, [Candidate(str(held.subjects[i]), float(score), int(held.counts[i]))
                      for i, score in zip(nearest, scores)]

    def forget(self, gallery_id: str) -> None:
        """Drop a deleted gallery's matrices (memory only: one of a gallery created again is read whole anyway)."""
        for key in [key for key in self._matrices if key[0] == gallery_id]:
            self._matrices.pop(key, None)
