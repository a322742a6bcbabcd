"""Grouping faces by person: label a set of unit embeddings so that each label is one person.

One contract for every rule, `group(embeddings, threshold) -> labels` (N,), labels 0..k-1 in order
of first appearance, and one measure of how well a labelling matches the truth (`scores`):
pairwise and BCubed precision, recall and F. The rules:

- `average_linkage` (ours): agglomerative clustering that merges the two groups with the smallest
  mean distance between their members while it is below the threshold (UPGMA). A mean over all
  pairs of two groups does not chain: one look-alike pair does not merge two people.
- `connected_components`: every pair closer than the threshold linked, groups = the linked
  components (the simplest rule, and the one that chains).
- `dbscan`: Ester et al. (1996) as Immich configures it for face clustering: a face with at
  least `min_samples` faces (itself included) within the threshold is a core face; core faces
  within the threshold of each other share a group, other faces join a core neighbour's group or
  stay alone.
- `chinese_whispers`: dlib's face clustering (Biemann, 2006): on the graph of pairs closer than
  the threshold, every face takes, in random order, the label most of its neighbours carry, for a
  fixed number of rounds.

Distances are the service's: Euclidean between L2-normalised embeddings (model/distance.py). Every
rule works on the sparse graph of close pairs, found a block of rows at a time (`close_pairs`), so
memory grows with the pairs near each face rather than with N^2 (bench/grouping_scale.py).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from model.card import GroupingCalibration
from model.errors import Uncalibrated

BLOCK = 2048  # rows of the similarity matrix computed at once where only close pairs are kept
# How far beyond its threshold average linkage keeps the pairs of its graph (model/verify/grouping.py,
# average_linkage): on all of LFW it then groups exactly as the full matrix (bench/grouping.py).
AVERAGE_REACH = 0.1
Grouping = Callable[[np.ndarray, float], np.ndarray]


def relabelled(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..k-1 in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse]


def close_pairs(embeddings: np.ndarray, threshold: float,
                progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i < j) of unit vectors closer than `threshold`, and its distance: a block of rows
    against the rows after it (half the products of a full matrix), compared as a similarity, so
    only the pairs kept pay for a square root. `progress(products done, products in all)` is called
    after each block; it may raise to stop."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    floor = 1.0 - threshold * threshold / 2.0  # |a - b|^2 = 2 - 2 a.b for unit vectors
    firsts, seconds, distances = [], [], []
    total_products = len(embeddings) * (len(embeddings) + 1) // 2
    for start in range(0, len(embeddings), BLOCK):
        similarity = embeddings[start : start + BLOCK] @ embeddings[start:].T
        rows, columns = np.nonzero(similarity > floor)
        keep = columns > rows
        rows, columns = rows[keep], columns[keep]
        firsts.append(rows + start)
        seconds.append(columns + start)
        distances.append(np.sqrt(np.clip(2.0 - 2.0 * similarity[rows, columns].astype(np.float64), 0.0, 4.0)))
        if progress is not None:
            done = len(embeddings) - start - len(similarity)  # rows after the block's, each with its own rest
            progress(total_products - done * (done + 1) // 2, total_products)
    if not firsts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(distances)


def components(count: int, firsts: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Connected components of the graph on `count` nodes with these edges, by union-find with path
    halving: the label of each node."""
    parent = np.arange(count)

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for first, second in zip(firsts.tolist(), seconds.tolist()):
        a, b = root(first), root(second)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return relabelled(np.array([root(node) for node in range(count)]))


def connected_components(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    return components(len(embeddings), *close_pairs(embeddings, threshold)[:2])


def dbscan(embeddings: np.ndarray, threshold: float, min_samples: int = 3) -> np.ndarray:
    """Border faces join the group of their first core neighbour; noise faces are groups of one."""
    count = len(embeddings)
    firsts, seconds, _ = close_pairs(embeddings, threshold)
    neighbours = np.bincount(firsts, minlength=count) + np.bincount(seconds, minlength=count)
    core = neighbours + 1 >= min_samples
    both_core = core[firsts] & core[seconds]
    labels = components(count, firsts[both_core], seconds[both_core])
    towards_second, towards_first = core[firsts] & ~core[seconds], core[seconds] & ~core[firsts]
    border = np.concatenate([seconds[towards_second], firsts[towards_first]])
    owner = np.concatenate([firsts[towards_second], seconds[towards_first]])
    border, first_edge = np.unique(border, return_index=True)
    labels[border] = labels[owner[first_edge]]
    return relabelled(labels)


def chinese_whispers(embeddings: np.ndarray, threshold: float, rounds: int = 100, seed: int = 0) -> np.ndarray:
    count = len(embeddings)
    firsts, seconds, _ = close_pairs(embeddings, threshold)
    nodes = np.concatenate([firsts, seconds])
    others = np.concatenate([seconds, firsts])
    order = np.argsort(nodes, kind="stable")
    starts = np.searchsorted(nodes[order], np.arange(count + 1))
    adjacency = others[order]
    labels = np.arange(count)
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        changed = 0
        for node in rng.permutation(count).tolist():
            neighbourhood = adjacency[starts[node] : starts[node + 1]]
            if len(neighbourhood) == 0:
                continue
            values, counts = np.unique(labels[neighbourhood], return_counts=True)
            best = values[np.argmax(counts)]
            if best != labels[node]:
                labels[node] = best
                changed += 1
        if not changed:
            break
    return relabelled(labels)


def average_linkage(embeddings: np.ndarray, threshold: float, reach: float = AVERAGE_REACH) -> np.ndarray:
    """UPGMA on the sparse graph of pairs closer than `threshold + reach`: the two groups with the
    smallest mean distance merge while it is below `threshold`, a pair outside the graph counting
    at the graph's radius, a lower bound of its distance, so no merge of the full matrix is missed
    (with a radius of 2 or more the graph is complete and this is exact UPGMA). Memory and time
    grow with the pairs near each face rather than N^2: 10^5 faces group in seconds."""
    radius = threshold + reach
    firsts, seconds, distances = close_pairs(embeddings, radius)
    count = len(embeddings)
    sizes = [1] * count
    version = [0] * count
    groups = [[face] for face in range(count)]
    # links[a][b] is links[b][a]: [the sum of the known distances between groups a and b, how many]
    links: list[dict[int, list]] = [{} for _ in range(count)]
    heap = []
    for first, second, distance in zip(firsts.tolist(), seconds.tolist(), distances.tolist()):
        links[first][second] = links[second][first] = [distance, 1]
        if distance < threshold:
            heap.append((distance, first, second, 0, 0))
    heapq.heapify(heap)
    while heap:
        _, a, b, version_a, version_b = heapq.heappop(heap)
        if version[a] != version_a or version[b] != version_b:
            continue  # a or b has merged since
        if len(links[a]) < len(links[b]):
            a, b = b, a  # the group with more links stays; the other's move into it
        moving, links[b] = links[b], {}
        del moving[a], links[a][b]
        for other, (total, known) in moving.items():
            del links[other][b]
            held = links[a].get(other)
            if held is None:
                held = links[a][other] = links[other][a] = [0.0, 0]
            held[0] += total
            held[1] += known
        sizes[a] += sizes[b]
        version[a] += 1
        version[b] = -1
        groups[a] += groups[b]
        groups[b] = []
        for other, (total, known) in links[a].items():
            pairs = sizes[a] * sizes[other]
            mean = (total + (pairs - known) * radius) / pairs
            if mean < threshold:
                heapq.heappush(heap, (mean, a, other, version[a], version[other]))
    labels = np.empty(count, dtype=np.int64)
    for label, faces in enumerate(groups):
        labels[faces] = label
    return relabelled(labels)


RULES: dict[str, Grouping] = {
    "average_linkage": average_linkage,
    "connected_components": connected_components,
    "dbscan": dbscan,
    "chinese_whispers": chinese_whispers,
}
DEFAULT_RULE = "average_linkage"


@dataclass(frozen=True)
class GroupingRule:
    """How faces are grouped: the rule, its threshold, and the share of impostor pairs closer than it
    where it is the card's calibrated one (None for a threshold a caller chose)."""

    rule: str
    threshold: float
    link_far: float | None = None

    def group(self, embeddings: np.ndarray) -> np.ndarray:
        if not len(embeddings):
            return np.zeros(0, np.int64)
        return RULES[self.rule](np.asarray(embeddings, np.float32), self.threshold)


def partition(labels: np.ndarray) -> tuple[list[list[int]], list[int]]:
    """The faces (indices) by label: the groups of two or more, largest first (then by their first
    face), and the faces alone, which fit no group."""
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels.tolist()):
        members.setdefault(label, []).append(index)
    groups = sorted((faces for faces in members.values() if len(faces) > 1), key=lambda faces: (-len(faces), faces[0]))
    return groups, [faces[0] for faces in members.values() if len(faces) == 1]


def resolve_grouping(calibration: GroupingCalibration | None, threshold: float | None = None) -> GroupingRule:
    """An explicit threshold (with the card's rule, or ours) wins; else the card's calibrated one;
    Uncalibrated where it has none."""
    rule = calibration.rule if calibration else DEFAULT_RULE
    if threshold is not None:
        return GroupingRule(rule, threshold)
    if calibration is None:
        raise Uncalibrated("the encoder has no calibrated grouping")
    return GroupingRule(rule, calibration.threshold, calibration.link_far)


def scores(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pairwise precision, recall and F (over all pairs of faces) and BCubed precision, recall and F
    (per face, averaged) of `labels` against the true identities, and the number of groups."""
    _, group = np.unique(labels, return_inverse=True)
    _, person = np.unique(truth, return_inverse=True)
    joint = np.zeros((group.max() + 1, person.max() + 1))
    np.add.at(joint, (group, person), 1)
    group_sizes, person_sizes = joint.sum(axis=1), joint.sum(axis=0)

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) / 2).sum())

    together = pairs(joint)
    pairwise_precision = together / pairs(group_sizes) if pairs(group_sizes) else 1.0
    pairwise_recall = together / pairs(person_sizes) if pairs(person_sizes) else 1.0
    squared = joint**2
    bcubed_precision = float((squared / group_sizes[:, None]).sum() / len(labels))
    bcubed_recall = float((squared / person_sizes[None, :]).sum() / len(labels))

    def f(precision: float, recall: float) -> float:
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    return {
        "pairwise_precision": pairwise_precision, "pairwise_recall": pairwise_recall,
        "pairwise_f": f(pairwise_precision, pairwise_recall),
        "bcubed_precision": bcubed_precision, "bcubed_recall": bcubed_recall,
        "bcubed_f": f(bcubed_precision, bcubed_recall),
        "groups": int(len(group_sizes)),
    }
