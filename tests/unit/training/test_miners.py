"""Miners against index tuples worked out by hand.

Points on a line: person A at x = 0, 1, 3.5 (indices 0, 1, 2), person B at x = 2, 6 (3, 4).
"""

import pytest
import torch

from model.training.miners import BatchAllMiner, BatchHardMiner, PairMiner, SemiHardMiner, all_pairs, build_miner

X = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.5, 0.0], [2.0, 0.0], [6.0, 0.0]])
LABELS = torch.tensor([0, 0, 0, 1, 1])


def as_set(indices) -> set[tuple[int, ...]]:
    return set(zip(*(t.tolist() for t in indices)))


def test_pairs_are_every_unordered_pair_split_by_label():
    a1, p, a2, n = PairMiner()(X, LABELS)
    assert as_set((a1, p)) == {(0, 1), (0, 2), (1, 2), (3, 4)}
    assert as_set((a2, n)) == {(0, 3), (0, 4), (1, 3), (1, 4), (2, 3), (2, 4)}


def test_batch_all_is_every_valid_triplet():
    triplets = as_set(BatchAllMiner()(X, LABELS))
    # A: 6 ordered (a, p) x 2 negatives; B: 2 ordered (a, p) x 3 negatives.
    assert len(triplets) == 18
    assert all(LABELS[a] == LABELS[p] != LABELS[n] and a != p for a, p, n in triplets)


def test_batch_hard_takes_farthest_positive_and_nearest_negative():
    # a0: positives at 1, 3.5 -> 2; negatives at 2, 6 -> 3.  a1: positives 1, 2.5 -> 2; -> 3.
    # a2: positives 3.5, 2.5 -> 0; negatives 1.5, 2.5 -> 3.  a3: positive 4; negatives 2, 1, 1.5 -> 1.
    # a4: positive 4 -> 3; negatives 6, 5, 2.5 -> 2.
    assert as_set(BatchHardMiner()(X, LABELS)) == {(0, 2, 3), (1, 2, 3), (2, 0, 3), (3, 4, 1), (4, 3, 2)}


def test_batch_hard_skips_anchors_without_a_positive():
    a, p, n = BatchHardMiner()(X[:4], LABELS[:4])  # B has only index 3 left
    assert a.tolist() == [0, 1, 2]


def test_semi_hard_keeps_negatives_beyond_the_positive_within_the_margin():
    # d(a,p) < d(a,n) < d(a,p) + 1.5: (0,1,3): 1 < 2 < 2.5; (4,3,1): 4 < 5 < 5.5. No other triplet.
    assert as_set(SemiHardMiner(margin=1.5)(X, LABELS)) == {(0, 1, 3), (4, 3, 1)}


def test_all_pairs_of_one_identity_has_no_negatives():
    a1, p, a2, n = all_pairs(torch.tensor([5, 5, 5]))
    assert len(a1) == 3 and len(a2) == 0


def test_build_miner_and_kinds():
    assert build_miner("semi_hard", margin=0.3).margin == 0.3
    assert build_miner("pairs").kind == "pairs" and build_miner("batch_hard").kind == "triplets"
    with pytest.raises(ValueError, match="unknown miner"):
        build_miner("hardest")
