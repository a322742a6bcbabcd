"""The grouping rules and their scores against hand-computed answers, on unit vectors of the plane
(angle a: the distance between angles a and b is 2 sin(|a - b| / 2))."""

import numpy as np
import pytest

from model.verify.grouping import RULES, average_linkage, chinese_whispers, connected_components, dbscan, scores


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
