"""Miners: which pairs or triplets of a batch a loss is computed on.

Contract (`Miner`): `miner(embeddings, labels) -> index tuple`, computed without gradient. A pair
miner (`kind = "pairs"`) returns `(a1, p, a2, n)`: positive pairs (a1[i], p[i]) and negative pairs
(a2[j], n[j]); a triplet miner (`kind = "triplets"`) returns `(a, p, n)`. The base class checks what
a miner returns against its kind, so a trainer can refuse a miner its loss cannot use and a miner
cannot hand a loss malformed indices. Distances are Euclidean (model.distance), the distance the
service compares with.
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.distance import pair_distances
from model.registry import Registry

Pairs = tuple[Tensor, Tensor, Tensor, Tensor]
Triplets = tuple[Tensor, Tensor, Tensor]
TUPLE_SIZES = {"pairs": 4, "triplets": 3}


def distance_matrix(embeddings: Tensor) -> Tensor:
    """All pairwise distances (N, N), exact (no Gram-matrix rounding: ties between near-equal
    distances decide which triplet is mined)."""
    return pair_distances(embeddings[:, None, :], embeddings[None, :, :])


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


def all_tuples(kind: str, labels: Tensor) -> Pairs | Triplets:
    """Every pair or every triplet of the batch: what a loss uses without a miner."""
    return all_pairs(labels) if kind == "pairs" else all_triplets(labels)


def check_tuples(kind: str, indices: tuple[Tensor, ...], batch_size: int) -> None:
    """Index tuples of `kind` into a batch of `batch_size`: integer vectors, of equal length per
    pair side (positives; negatives) or per triplet, within the batch."""
    if len(indices) != TUPLE_SIZES[kind]:
        raise ValueError(f"{kind} need {TUPLE_SIZES[kind]} index tensors, got {len(indices)}")
    groups = [indices[:2], indices[2:]] if kind == "pairs" else [indices]
    for group in groups:
        if len({len(index) for index in group}) != 1:
            raise ValueError(f"the index tensors of {kind} differ in length")
    for index in indices:
        if index.dtype not in (torch.int64, torch.int32) or index.ndim != 1:
            raise ValueError("indices must be 1-D integer tensors")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= batch_size):
            raise ValueError(f"an index falls outside the batch of {batch_size}")


class Miner:
    """Subclasses set `kind` and implement `mine`; calling the miner runs it without gradient and
    checks its output."""

    kind: str = "triplets"

    def mine(self, embeddings: Tensor, labels: Tensor) -> Pairs | Triplets:
        raise NotImplementedError

    def __call__(self, embeddings: Tensor, labels: Tensor) -> Pairs | Triplets:
        with torch.no_grad():
            indices = self.mine(embeddings.detach(), labels)
        check_tuples(self.kind, indices, len(labels))
        return indices


MINERS: Registry[type[Miner]] = Registry("miner")


@MINERS.register("pairs")
class PairMiner(Miner):
    """All positive and all negative pairs of the batch (what contrastive losses use unmined)."""

    kind = "pairs"

    def mine(self, embeddings: Tensor, labels: Tensor) -> Pairs:
        return all_pairs(labels)


@MINERS.register("batch_all")
class BatchAllMiner(Miner):
    """Every valid triplet (Hermans et al., 2017, "batch all")."""

    def mine(self, embeddings: Tensor, labels: Tensor) -> Triplets:
        return all_triplets(labels)


@MINERS.register("batch_hard")
class BatchHardMiner(Miner):
    """Per anchor, its farthest positive and its nearest negative (Hermans et al., 2017): one triplet
    per anchor that has both, so the batch's hardest cases set the gradient."""

    def mine(self, embeddings: Tensor, labels: Tensor) -> Triplets:
        distances = distance_matrix(embeddings)
        same = labels[:, None] == labels[None, :]
        positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        has_both = positive.any(1) & (~same).any(1)
        p = distances.masked_fill(~positive, -1.0).argmax(1)
        n = distances.masked_fill(same, float("inf")).argmin(1)
        a = torch.nonzero(has_both, as_tuple=True)[0]
        return a, p[a], n[a]


@MINERS.register("semi_hard")
class SemiHardMiner(Miner):
    """Triplets whose negative is farther than the positive but still inside the margin,
    d(a,p) < d(a,n) < d(a,p) + margin (Schroff et al., 2015): they carry a loss without the
    hardest negatives that collapse training early on. All of them, not one per pair."""

    def __init__(self, margin: float = 0.2):
        self.margin = margin

    def mine(self, embeddings: Tensor, labels: Tensor) -> Triplets:
        distances = distance_matrix(embeddings)
        d_ap = distances[:, :, None]
        d_an = distances[:, None, :]
        mask = triplet_mask(labels) & (d_an > d_ap) & (d_an < d_ap + self.margin)
        a, p, n = torch.nonzero(mask, as_tuple=True)
        return a, p, n


build_miner = MINERS.build
