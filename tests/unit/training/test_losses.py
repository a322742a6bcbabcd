"""Losses against values worked out by hand on tiny 2-d embeddings."""

import math

import pytest
import torch

from model.training.losses import (
    AngularLoss,
    ContrastiveLoss,
    PairwiseSimilarityLoss,
    TripletMarginLoss,
    build_loss,
)

DTYPES = [torch.float32, torch.float64]

# Unit vectors: 0 = (1, 0) and 1 = (0.6, 0.8) are one person, 2 = (0, 1) and 3 = (-1, 0) another.
# Distances: d01 = sqrt(0.8), d02 = sqrt(2), d03 = 2, d12 = sqrt(0.4), d13 = sqrt(3.2), d23 = sqrt(2).
POINTS = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]]
LABELS = torch.tensor([0, 0, 1, 1])


def embeddings(count: int = 4, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(POINTS[:count], dtype=dtype, requires_grad=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_contrastive_same_pays_squared_distance_different_pays_squared_shortfall(dtype):
    # Three points: (0,1) same, d^2 = 0.8; (0,2) different, d = 1.414 > margin 1, pays 0;
    # (1,2) different, d = sqrt(0.4), pays (1 - sqrt(0.4))^2 = 0.135089.
    loss = ContrastiveLoss(margin=1.0)(embeddings(3, dtype), LABELS[:3])
    assert loss.dtype == dtype
    assert loss.item() == pytest.approx((0.8 + 0 + (1 - math.sqrt(0.4)) ** 2) / 3, rel=1e-6)


def test_contrastive_uses_only_the_given_pairs():
    # Positive (0,1) and negative (1,2) only: (0.8 + 0.135089) / 2.
    pairs = (torch.tensor([0]), torch.tensor([1]), torch.tensor([1]), torch.tensor([2]))
    loss = ContrastiveLoss(margin=1.0)(embeddings(3), LABELS[:3], pairs)
    assert loss.item() == pytest.approx((0.8 + (1 - math.sqrt(0.4)) ** 2) / 2, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_averages_hinge_over_all_triplets(dtype):
    # 8 triplets (a, p ordered). With margin 0.2 only three are active:
    # (1,0,2): d01 - d12 + 0.2 = 0.461971; (2,3,0): d23 - d02 + 0.2 = 0.2; (2,3,1): d23 - d12 + 0.2.
    d01, d02, d12, d23 = math.sqrt(0.8), math.sqrt(2), math.sqrt(0.4), math.sqrt(2)
    expected = ((d01 - d12 + 0.2) + (d23 - d02 + 0.2) + (d23 - d12 + 0.2)) / 8
    loss = TripletMarginLoss(margin=0.2)(embeddings(4, dtype), LABELS)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.205466, abs=1e-6)


def test_triplet_on_mined_triplets_and_empty_selection_is_a_connected_zero():
    x = embeddings()
    mined = (torch.tensor([1]), torch.tensor([0]), torch.tensor([2]))
    loss = TripletMarginLoss(margin=0.2)(x, LABELS, mined)
    assert loss.item() == pytest.approx(math.sqrt(0.8) - math.sqrt(0.4) + 0.2, rel=1e-6)
    empty = (torch.tensor([], dtype=torch.long),) * 3
    zero = TripletMarginLoss()(x, LABELS, empty)
    zero.backward()
    assert zero.item() == 0.0 and x.grad is not None and not x.grad.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_angular_log_sum_exp_over_negatives_per_pair(dtype):
    # alpha = 45 degrees: tan^2 = 1, f_apn = 4 (x_a + x_p).x_n - 4 x_a.x_p.
    # Pair (0,1): x0 + x1 = (1.6, 0.8), x0.x1 = 0.6; n=2: 3.2 - 2.4 = 0.8; n=3: -6.4 - 2.4 = -8.8.
    # Pair (2,3): x2 + x3 = (-1, 1), x2.x3 = 0;     n=0: -4;              n=1: -2.4 + 3.2 = 0.8.
    first = math.log(1 + math.exp(0.8) + math.exp(-8.8))
    second = math.log(1 + math.exp(-4) + math.exp(0.8))
    loss = AngularLoss(alpha=45.0)(embeddings(4, dtype), LABELS)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_angular_groups_mined_triplets_by_anchor_positive():
    # (0,1,2) and (0,1,3) form one group, (3,2,1) another: the f of (3,2,1) equals that of (2,3,1).
    mined = (torch.tensor([0, 0, 3]), torch.tensor([1, 1, 2]), torch.tensor([2, 3, 1]))
    loss = AngularLoss(alpha=45.0)(embeddings(), LABELS, mined)
    expected = (math.log(1 + math.exp(0.8) + math.exp(-8.8)) + math.log(1 + math.exp(0.8))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_angular_does_not_overflow_on_large_embeddings():
    loss = AngularLoss(alpha=45.0)(embeddings().detach() * 100, LABELS)
    # f scales with the square of the norms: each pair's largest f becomes 0.8 * 10^4 = 8000, and
    # log(1 + e^8000 + ...) = 8000 to float precision.
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(8000, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pairwise_head_on_absolute_difference_with_binary_cross_entropy(dtype):
    loss_fn = PairwiseSimilarityLoss(embedding_dim=2).to(dtype)
    with torch.no_grad():
        loss_fn.head.weight.copy_(torch.tensor([[-2.0, -1.0]]))
        loss_fn.head.bias.fill_(1.0)
    # (0,1) same: |d| = (0.4, 0.8), logit 1 - 0.8 - 0.8 = -0.6, pays log(1 + e^0.6).
    # (0,2) different: |d| = (1, 1), logit -2, pays log(1 + e^-2).
    # (1,2) different: |d| = (0.6, 0.2), logit -0.4, pays log(1 + e^-0.4).
    expected = (math.log(1 + math.exp(0.6)) + math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-0.4))) / 3
    loss = loss_fn(embeddings(3, dtype), LABELS[:3])
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert loss_fn.head.weight.grad is not None  # the trainer optimises the head with the encoder


def test_build_loss_by_name_and_unknown_names_are_refused():
    assert isinstance(build_loss("triplet", margin=0.3), TripletMarginLoss)
    assert build_loss("pairwise", embedding_dim=8).head.in_features == 8
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("arcface")


def test_identical_embeddings_have_finite_gradients():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    ContrastiveLoss()(x, torch.tensor([0, 0, 1])).backward()
    assert torch.isfinite(x.grad).all()
