"""Metric-learning losses behind one contract (`MetricLoss`): `loss(embeddings, labels, indices_tuple=None) -> scalar`.

`embeddings` (N, D) are used as given; the trainer L2-normalises them first, because the service
compares L2-normalised embeddings and every margin below is meant on that scale (distances 0..2).
`indices_tuple` is what a miner (model/training/miners.py) returned, of the loss's `kind`; without
one a loss uses every pair or every triplet of the batch. The base class checks the inputs, hands
the tuples to `compute_loss`, which returns one loss per element (per pair, per triplet, or per
anchor-positive pair), and averages them; an empty selection gives a zero that still belongs to
the graph, so a batch where the miner found nothing is a no-op step, not an error.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.distance import pair_distances
from model.registry import Registry
from model.training.miners import Pairs, Triplets, all_tuples, check_tuples


class MetricLoss(nn.Module):
    """Subclasses set `kind` ("pairs" or "triplets") and implement `compute_loss`."""

    kind: str = "pairs"

    def compute_loss(self, embeddings: Tensor, indices: Pairs | Triplets) -> Tensor:
        """Per-element losses (1-D) of the given, non-empty selection."""
        raise NotImplementedError

    def forward(self, embeddings: Tensor, labels: Tensor, indices_tuple: Pairs | Triplets | None = None) -> Tensor:
        if embeddings.ndim != 2 or labels.shape != (len(embeddings),):
            raise ValueError("need embeddings (N, D) and labels (N,)")
        indices = all_tuples(self.kind, labels) if indices_tuple is None else indices_tuple
        check_tuples(self.kind, indices, len(embeddings))
        if all(index.numel() == 0 for index in indices):
            return embeddings.sum() * 0.0
        return self.compute_loss(embeddings, indices).mean()


LOSSES: Registry[type[MetricLoss]] = Registry("loss")


@LOSSES.register("contrastive")
class ContrastiveLoss(MetricLoss):
    """Hadsell, Chopra and LeCun (2006): a same pair pays d^2, a different pair max(0, m - d)^2, so
    different faces are pushed apart only until they are `margin` apart."""

    kind = "pairs"

    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = margin

    def compute_loss(self, embeddings: Tensor, indices: Pairs) -> Tensor:
        a1, p, a2, n = indices
        positive = pair_distances(embeddings[a1], embeddings[p]).pow(2)
        negative = F.relu(self.margin - pair_distances(embeddings[a2], embeddings[n])).pow(2)
        return torch.cat([positive, negative])


@LOSSES.register("triplet")
class TripletMarginLoss(MetricLoss):
    """Schroff, Kalenichenko and Philbin (2015): max(0, d(a,p) - d(a,n) + margin), an anchor nearer
    its positive than its negative by the margin. d is the Euclidean distance (FaceNet squares it);
    the service thresholds the plain distance, so that is the one whose gaps are trained."""

    kind = "triplets"

    def __init__(self, margin: float = 0.2):
        super().__init__()
        self.margin = margin

    def compute_loss(self, embeddings: Tensor, indices: Triplets) -> Tensor:
        a, p, n = indices
        d_ap = pair_distances(embeddings[a], embeddings[p])
        d_an = pair_distances(embeddings[a], embeddings[n])
        return F.relu(d_ap - d_an + self.margin)


@LOSSES.register("angular")
class AngularLoss(MetricLoss):
    """Wang et al. (2017), N-pair form: for each anchor-positive pair,
    log(1 + sum_n exp(f_apn)), f_apn = 4 tan^2(alpha) (x_a + x_p)^T x_n - 2 (1 + tan^2 alpha) x_a^T x_p.

    It bounds the angle at the negative in the triangle (a, p, n), which, unlike a distance margin,
    is scale-free. Triplets are grouped by their (a, p); without mined triplets every unordered
    positive pair is taken with every negative of the batch. `alpha` is in degrees.
    """

    kind = "triplets"

    def __init__(self, alpha: float = 40.0):
        super().__init__()
        self.alpha = alpha
        self.tan_squared = math.tan(math.radians(alpha)) ** 2

    def forward(self, embeddings: Tensor, labels: Tensor, indices_tuple: Triplets | None = None) -> Tensor:
        if indices_tuple is None:  # f is symmetric in a and p: each unordered positive pair once
            a, p, n = all_tuples(self.kind, labels)
            keep = a < p
            indices_tuple = (a[keep], p[keep], n[keep])
        return super().forward(embeddings, labels, indices_tuple)

    def compute_loss(self, embeddings: Tensor, indices: Triplets) -> Tensor:
        a, p, n = indices
        x_a, x_p, x_n = embeddings[a], embeddings[p], embeddings[n]
        f = 4 * self.tan_squared * ((x_a + x_p) * x_n).sum(-1) - 2 * (1 + self.tan_squared) * (x_a * x_p).sum(-1)
        _, group = torch.unique(a * len(embeddings) + p, return_inverse=True)
        groups = int(group.max()) + 1
        # log(1 + sum exp f) per group, shifted by max(0, max f) so exp never overflows.
        shift = f.new_zeros(groups).scatter_reduce(0, group, f.detach(), "amax", include_self=True)
        total = torch.exp(-shift).index_add(0, group, torch.exp(f - shift[group]))
        return shift + torch.log(total)


@LOSSES.register("pairwise")
class PairwiseSimilarityLoss(MetricLoss):
    """A learned same/different classifier on a pair (Koch et al., 2015): a linear head maps
    |e1 - e2| to a logit, trained with binary cross-entropy against 1 (same) / 0 (different).

    The head's parameters are the loss's own, so the trainer optimises them with the encoder's; only
    the encoder is shipped, and the service still compares Euclidean distances.
    """

    kind = "pairs"

    def __init__(self, embedding_dim: int):
        super().__init__()
        self.head = nn.Linear(embedding_dim, 1)

    def logits(self, first: Tensor, second: Tensor) -> Tensor:
        return self.head((first - second).abs()).squeeze(-1)

    def compute_loss(self, embeddings: Tensor, indices: Pairs) -> Tensor:
        a1, p, a2, n = indices
        first = torch.cat([embeddings[a1], embeddings[a2]])
        second = torch.cat([embeddings[p], embeddings[n]])
        targets = torch.cat([torch.ones(a1.numel()), torch.zeros(a2.numel())]).to(embeddings)
        return F.binary_cross_entropy_with_logits(self.logits(first, second), targets, reduction="none")


build_loss = LOSSES.build
