"""Flip test-time augmentation: a face's embedding is the mean of its own and its mirror image's
(model.encoders.inference.InferenceEncoder.embed_with_mirror computes both in one pass)."""

from __future__ import annotations

from typing import TypeVar

Embeddings = TypeVar("Embeddings")  # NumPy arrays, or torch tensors in training


def flip_mean(plain: Embeddings, mirrored: Embeddings) -> Embeddings:
    """The flip-TTA embedding (before normalisation): the mean of a face's and its mirror's."""
    return (plain + mirrored) / 2
