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

Distances are the service's: Euclidean between L2-normalised embeddings (model/distance.py). The
dense rules hold an N x N float32 matrix (13,233 faces: 0.7 GB).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from model.distance import distance_matrix

BLOCK = 2048  # rows of the distance matrix computed at once where only close pairs are kept
Grouping = Callable[[np.ndarray, float], np.ndarray]


def relabelled(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..k-1 in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse]


def close_pairs(embeddings: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) at a distance below `threshold`, a block of rows at a time."""
    firsts, seconds = [], []
    for start in range(0, len(embeddings), BLOCK):
        block = distance_matrix(embeddings[start : start + BLOCK], embeddings)
        rows, columns = np.nonzero(block < threshold)
        rows += start
        keep = rows < columns
        firsts.append(rows[keep])
        seconds.append(columns[keep])
    return np.concatenate(firsts), np.concatenate(seconds)


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
    return components(len(embeddings), *close_pairs(embeddings, threshold))


def dbscan(embeddings: np.ndarray, threshold: float, min_samples: int = 3) -> np.ndarray:
    """Border faces join the group of their first core neighbour; noise faces are groups of one."""
    count = len(embeddings)
    firsts, seconds = close_pairs(embeddings, threshold)
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
    firsts, seconds = close_pairs(embeddings, threshold)
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


def average_linkage(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """UPGMA by the nearest-neighbour chain (Murtagh, 1983): each merge updates one row of the
    dense matrix by the Lance-Williams formula, so N merges cost O(N^2) in all."""
    count = len(embeddings)
    embeddings = embeddings.astype(np.float32)
    distances = distance_matrix(embeddings)
    np.fill_diagonal(distances, np.inf)
    sizes = np.ones(count)
    active = np.ones(count, dtype=bool)
    remaining = count  # active.sum(), kept rather than recounted on every step
    members = np.arange(count)  # each face's group representative, updated on merges
    chain: list[int] = []
    while remaining > 1:
        if not chain:
            chain.append(int(np.flatnonzero(active)[0]))
        current = chain[-1]
        nearest = int(np.argmin(distances[current]))
        if len(chain) > 1 and distances[current, chain[-2]] <= distances[current, nearest]:
            nearest = chain[-2]  # ties go back down the chain, so it never cycles
        if distances[current, nearest] >= threshold:
            # The chain's end is nearest to nothing below the threshold: it is final.
            active[current] = False
            remaining -= 1
            distances[current, :] = np.inf
            distances[:, current] = np.inf
            chain.pop()
            continue
        if len(chain) > 1 and nearest == chain[-2]:
            chain.pop()
            chain.pop()
            merged = (sizes[current] * distances[current] + sizes[nearest] * distances[nearest]) / (
                sizes[current] + sizes[nearest])
            distances[nearest] = merged
            distances[:, nearest] = merged
            distances[nearest, nearest] = np.inf
            distances[current, :] = np.inf
            distances[:, current] = np.inf
            sizes[nearest] += sizes[current]
            active[current] = False
            remaining -= 1
            members[members == current] = nearest
        else:
            chain.append(nearest)
    return relabelled(members)


RULES: dict[str, Grouping] = {
    "average_linkage": average_linkage,
    "connected_components": connected_components,
    "dbscan": dbscan,
    "chinese_whispers": chinese_whispers,
}


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
