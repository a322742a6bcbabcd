"""The P x K batch sampler."""

from collections import Counter

import pytest

from model.training.samplers import PKSampler

# Identity 0: 5 images, 1: 4, 2: 2, 3: 1 (skipped), 4: 6.
LABELS = [0] * 5 + [1] * 4 + [2] * 2 + [3] + [4] * 6


def test_each_batch_is_p_distinct_identities_of_k_images():
    sampler = PKSampler(LABELS, p=3, k=2, seed=1, batches_per_epoch=20)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 20
    for batch in batches:
        counts = Counter(LABELS[i] for i in batch)
        assert len(batch) == 6 and len(counts) == 3 and set(counts.values()) == {2}
        assert len(set(batch)) == 6  # every identity here has >= K images: no repeats


def test_identity_with_fewer_than_k_images_gives_all_plus_repeats_and_singletons_are_skipped():
    sampler = PKSampler(LABELS, p=4, k=3, seed=0, batches_per_epoch=10)
    assert sampler.skipped == 1
    for batch in sampler:
        assert 11 not in batch  # the single image of identity 3
        of_two = [i for i in batch if LABELS[i] == 2]
        assert len(of_two) == 3 and set(of_two) == {9, 10}  # both images, one repeated


def test_seeded_per_epoch_so_a_resumed_run_sees_the_same_batches():
    first, second = PKSampler(LABELS, 2, 2, seed=5), PKSampler(LABELS, 2, 2, seed=5)
    first.set_epoch(3)
    second.set_epoch(3)
    assert list(first) == list(second)
    second.set_epoch(4)
    assert list(first) != list(second)
    assert list(PKSampler(LABELS, 2, 2, seed=6)) != list(PKSampler(LABELS, 2, 2, seed=5))


def test_default_epoch_covers_the_images_once():
    assert len(PKSampler(LABELS, p=2, k=2)) == len(LABELS) // 4


def test_too_few_identities_are_refused():
    with pytest.raises(ValueError, match="only 4 have 2\\+ images"):
        PKSampler(LABELS, p=5, k=2)
    with pytest.raises(ValueError):
        PKSampler(LABELS, p=2, k=1)
