"""Flip test-time augmentation: a face's embedding is the mean of its own and its mirror image's
(model.encoders.inference.InferenceEncoder.embed_with_mirror computes both in one pass)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np

Embeddings = TypeVar("Embeddings")  # NumPy arrays, or torch tensors in training


def with_mirrors(chips: np.ndarray) -> np.ndarray:
    """A batch of chips (N, 3, H, W) followed by their mirror images: (2N, 3, H, W)."""
    return np.concatenate([chips, chips[..., ::-1]])


def flip_mean(plain: Embeddings, mirrored: Embeddings) -> Embeddings:
    """The flip-TTA embedding (before normalisation): the mean of a face's and its mirror's."""
    return (plain + mirrored) / 2
