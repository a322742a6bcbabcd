"""Flip test-time augmentation: a face's embedding and its mirror image's, from one encoder pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import nn

Embeddings = TypeVar("Embeddings")  # a torch.Tensor, or NumPy arrays of stored embeddings


def encode_with_mirror(encoder: nn.Module, chips: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw embeddings of the chips (one batch per template) and of their mirror images, in one pass."""
    count = len(chips[0])
    both = encoder(*[torch.cat([batch, batch.flip(-1)]) for batch in chips])
    return both[:count], both[count:]


def flip_mean(plain: Embeddings, mirrored: Embeddings) -> Embeddings:
    """The flip-TTA embedding (before normalisation): the mean of a face's and its mirror's."""
    return (plain + mirrored) / 2
