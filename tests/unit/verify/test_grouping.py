"""The grouping rules and their scores against hand-computed answers, on unit vectors of the plane
(angle a: the distance between angles a and b is 2 sin(|a - b| / 2))."""

import numpy as np
import pytest

from model.card import GroupingCalibration
from model.errors import Uncalibrated
from model.verify.grouping import (
    RULES,
    GroupingRule,
    average_linkage,
    chinese_whispers,
    close_pairs,
    connected_components,
    dbscan,
    partition,
    resolve_grouping,
    scores,
)


def on_circle(*angles: float) -> np.ndarray:
    return np.array([[np.cos(a), np.sin(a)] for a in angles], dtype=np.float32)


TWO_PEOPLE = on_circle(0.0, 0.05, 0.1, 1.0, 1.05, 1.1)  # within a person <= 0.1 apart, across >= 0.8


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_splits_two_people_apart(rule):
    assert RULES[rule](TWO_PEOPLE, 0.3).tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_leaves_faces_alone_below_any_link(rule):
    assert RULES[rule](on_circle(0.0, 1.0, 2.0), 0.3).tolist() == [0, 1, 2]


def test_connected_components_chain_and_average_linkage_does_not():
    # Neighbours 0.2 rad apart (distance 0.1997): every link is below 0.25, so the components chain
    # all five; the mean distance of {0, 0.2} to 0.4 is (0.3973 + 0.1997) / 2 = 0.2985, above it.
    chain = on_circle(0.0, 0.2, 0.4, 0.6, 0.8)
    assert connected_components(chain, 0.25).tolist() == [0, 0, 0, 0, 0]
    labels = average_linkage(chain, 0.25)
    assert len(set(labels.tolist())) >= 3
    assert all(np.sum(labels == label) <= 2 for label in set(labels.tolist()))


def test_dbscan_core_border_and_noise_faces():
    # Within 0.12 (itself included): the face at 0 has 3, at 0.05 3, at 0.1 4, at 0.2 only 2
    # (itself and 0.1), at 2.0 only itself.
    faces = on_circle(0.0, 0.05, 0.1, 0.2, 2.0)
    # min_samples 3: three core faces in one group, 0.2 a border face of it, 2.0 noise, alone.
    assert dbscan(faces, 0.12, min_samples=3).tolist() == [0, 0, 0, 0, 1]
    # min_samples 4: 0.1 alone is core; 0, 0.05 and 0.2 are its border faces.
    assert dbscan(faces, 0.12, min_samples=4).tolist() == [0, 0, 0, 0, 1]
    # min_samples 5: no core face, so every face is noise, alone; and a pair is noise at 3.
    assert dbscan(faces, 0.12, min_samples=5).tolist() == [0, 1, 2, 3, 4]
    assert dbscan(on_circle(0.0, 0.05), 0.12, min_samples=3).tolist() == [0, 1]


def test_chinese_whispers_takes_the_label_most_neighbours_carry():
    # Two triangles joined by one link (0.3 to 0.9 rad): each face keeps its own triangle's label.
    faces = on_circle(0.0, 0.1, 0.2, 0.9, 1.0, 1.1, 0.55)
    labels = chinese_whispers(faces[:6], 0.25)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_scores_by_hand():
    # Groups {0, 1}, {2, 3}; people {0, 1, 2}, {3}. Pairs put together: (0,1), (2,3); truly
    # together: (0,1), (0,2), (1,2): one right of two, one found of three.
    result = scores(np.array([0, 0, 1, 1]), np.array([7, 7, 7, 9]))
    assert result["pairwise_precision"] == pytest.approx(1 / 2)
    assert result["pairwise_recall"] == pytest.approx(1 / 3)
    assert result["pairwise_f"] == pytest.approx(0.4)
    # BCubed per face: precision 1, 1, 1/2, 1/2; recall 2/3, 2/3, 1/3, 1.
    assert result["bcubed_precision"] == pytest.approx(0.75)
    assert result["bcubed_recall"] == pytest.approx(2 / 3)
    assert result["groups"] == 2


def test_a_perfect_labelling_scores_one_whatever_its_numbers():
    result = scores(np.array([5, 5, 2, 9]), np.array([0, 0, 1, 2]))
    assert result["pairwise_f"] == result["bcubed_f"] == 1.0 and result["groups"] == 3


def upgma_by_brute_force(embeddings: np.ndarray, threshold: float) -> list[set[int]]:
    """UPGMA as the textbook states it: merge the two groups of smallest mean distance while below."""
    groups = [{i} for i in range(len(embeddings))]
    distance = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=-1)
    while len(groups) > 1:
        means = {(a, b): distance[np.ix_(sorted(groups[a]), sorted(groups[b]))].mean()
                 for a in range(len(groups)) for b in range(a + 1, len(groups))}
        (a, b), best = min(means.items(), key=lambda item: item[1])
        if best >= threshold:
            break
        groups[a] |= groups.pop(b)
    return sorted(groups, key=min)


@pytest.mark.parametrize("seed", range(5))
def test_average_linkage_is_upgma_cut_at_the_threshold(seed):
    rng = np.random.default_rng(seed)
    faces = rng.normal(size=(24, 3)).astype(np.float32)
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    labels = average_linkage(faces, 0.9)
    found = sorted(({i for i in range(len(faces)) if labels[i] == label} for label in set(labels.tolist())), key=min)
    assert found == upgma_by_brute_force(faces, 0.9)


def test_close_pairs_are_the_pairs_below_the_threshold_with_their_distances():
    faces = on_circle(0.0, 0.1, 1.0)  # distances 0.0999, 0.9589, 0.8674
    firsts, seconds, distances = close_pairs(faces, 0.9)
    assert list(zip(firsts.tolist(), seconds.tolist())) == [(0, 1), (1, 2)]
    assert distances == pytest.approx([2 * np.sin(0.05), 2 * np.sin(0.45)], abs=1e-6)


def test_partition_puts_groups_largest_first_and_faces_alone_apart():
    assert partition(np.array([0, 1, 1, 2, 2, 2, 3])) == ([[3, 4, 5], [1, 2]], [0, 6])


def test_a_grouping_rule_from_the_card_or_the_caller():
    calibration = GroupingCalibration(rule="average_linkage", threshold=0.58, link_far=2e-5, view1={})
    assert resolve_grouping(calibration) == GroupingRule("average_linkage", 0.58, 2e-5)
    assert resolve_grouping(calibration, 0.7) == GroupingRule("average_linkage", 0.7, None)
    assert resolve_grouping(None, 0.7).rule == "average_linkage"
    with pytest.raises(Uncalibrated):
        resolve_grouping(None)
    assert GroupingRule("average_linkage", 0.3).group(np.zeros((0, 2), np.float32)).tolist() == []


def test_the_index_finds_the_close_pairs_the_exact_blocks_find(monkeypatch):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(300, 32))
    faces = (centres[rng.integers(0, 300, 3000)] + 0.15 * rng.normal(size=(3000, 32))).astype(np.float32)
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    exact = close_pairs(faces, 0.6)
    seen = []
    monkeypatch.setattr("model.verify.grouping.EXACT_UP_TO", 1000)
    monkeypatch.setattr("model.verify.grouping.QUERY_BLOCK", 1000)
    indexed = close_pairs(faces, 0.6, lambda done, total: seen.append((done, total)))
    assert seen == [(0, 3000), (1000, 3000), (2000, 3000), (3000, 3000)]  # built, then each block
    found = dict(zip(zip(indexed[0].tolist(), indexed[1].tolist()), indexed[2].tolist()))
    truth = dict(zip(zip(exact[0].tolist(), exact[1].tolist()), exact[2].tolist()))
    assert set(found) <= set(truth) and len(found) >= 0.99 * len(truth)
    assert all(abs(found[pair] - truth[pair]) < 1e-5 for pair in found)
