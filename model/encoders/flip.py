"""Flip test-time augmentation: a face's embedding and its mirror image's, from one encoder pass;
and the raw norms beside the embeddings, which face quality uses."""

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


def encode_with_norms(encoder: nn.Module, chips: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw embeddings and the raw norm of each member's (N, members; one member unless fused)."""
    if hasattr(encoder, "embed_with_norms"):
        return encoder.embed_with_norms(*chips)
    raw = encoder(*chips)
    return raw, raw.float().norm(dim=-1, keepdim=True)


def flip_mean(plain: Embeddings, mirrored: Embeddings) -> Embeddings:
    """The flip-TTA embedding (before normalisation): the mean of a face's and its mirror's."""
    return (plain + mirrored) / 2
