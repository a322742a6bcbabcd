"""Miners: which pairs or triplets of a batch a loss is computed on.

Contract: `miner(embeddings, labels) -> index tuple`, computed without gradient. A pair miner returns
`(a1, p, a2, n)`: positive pairs (a1[i], p[i]) and negative pairs (a2[j], n[j]); a triplet miner
returns `(a, p, n)`. Each miner says which by its `kind` ("pairs" or "triplets"), so a trainer can
refuse a miner its loss cannot use. Distances are Euclidean, the distance the service compares with.
"""

from __future__ import annotations

import torch
from torch import Tensor

Pairs = tuple[Tensor, Tensor, Tensor, Tensor]
Triplets = tuple[Tensor, Tensor, Tensor]


def distance_matrix(embeddings: Tensor) -> Tensor:
    """All pairwise Euclidean distances (N, N)."""
    return torch.cdist(embeddings, embeddings)


def all_pairs(labels: Tensor) -> Pairs:
    """Every unordered pair i < j of the batch: (a1, p) where labels agree, (a2, n) where not."""
    same = labels[:, None] == labels[None, :]
    upper = torch.ones_like(same).triu(diagonal=1)
    a1, p = torch.nonzero(same & upper, as_tuple=True)
    a2, n = torch.nonzero(~same & upper, as_tuple=True)
    return a1, p, a2, n


def triplet_mask(labels: Tensor) -> Tensor:
    """(N, N, N) mask of valid triplets [a, p, n]: a != p share a label, n has another."""
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return positive[:, :, None] & ~same[:, None, :]


def all_triplets(labels: Tensor) -> Triplets:
    a, p, n = torch.nonzero(triplet_mask(labels), as_tuple=True)
    return a, p, n


class PairMiner:
    """All positive and all negative pairs of the batch (what contrastive losses use unmined)."""

    kind = "pairs"

    def __call__(self, embeddings: Tensor, labels: Tensor) -> Pairs:
        return all_pairs(labels)


class BatchAllMiner:
    """Every valid triplet (Hermans et al., 2017, "batch all")."""

    kind = "triplets"

    def __call__(self, embeddings: Tensor, labels: Tensor) -> Triplets:
        return all_triplets(labels)


class BatchHardMiner:
    """Per anchor, its farthest positive and its nearest negative (Hermans et al., 2017): one triplet
    per anchor that has both, so the batch's hardest cases set the gradient."""

    kind = "triplets"

    @torch.no_grad()
    def __call__(self, embeddings: Tensor, labels: Tensor) -> Triplets:
        distances = distance_matrix(embeddings.detach())
        same = labels[:, None] == labels[None, :]
        positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        has_both = positive.any(1) & (~same).any(1)
        p = distances.masked_fill(~positive, -1.0).argmax(1)
        n = distances.masked_fill(same, float("inf")).argmin(1)
        a = torch.nonzero(has_both, as_tuple=True)[0]
        return a, p[a], n[a]


class SemiHardMiner:
    """Triplets whose negative is farther than the positive but still inside the margin,
    d(a,p) < d(a,n) < d(a,p) + margin (Schroff et al., 2015): they carry a loss without the
    hardest negatives that collapse training early on. All of them, not one per pair."""

    kind = "triplets"

    def __init__(self, margin: float = 0.2):
        self.margin = margin

    @torch.no_grad()
    def __call__(self, embeddings: Tensor, labels: Tensor) -> Triplets:
        distances = distance_matrix(embeddings.detach())
        d_ap = distances[:, :, None]
        d_an = distances[:, None, :]
        mask = triplet_mask(labels) & (d_an > d_ap) & (d_an < d_ap + self.margin)
        a, p, n = torch.nonzero(mask, as_tuple=True)
        return a, p, n


Miner = PairMiner | BatchAllMiner | BatchHardMiner | SemiHardMiner

MINERS: dict[str, type[Miner]] = {
    "pairs": PairMiner,
    "batch_all": BatchAllMiner,
    "batch_hard": BatchHardMiner,
    "semi_hard": SemiHardMiner,
}


def build_miner(name: str, **params) -> Miner:
    if name not in MINERS:
        raise ValueError(f"unknown miner {name!r}; known: {sorted(MINERS)}")
    return MINERS[name](**params)
