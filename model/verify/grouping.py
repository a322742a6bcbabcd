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
# Above this many vectors, close pairs come from an inverted-file index (indexed_close_pairs): the
# exact blocks' time grows with N^2 (27 s at 10^5 on 2 cores; about 45 min at 10^6, extrapolated).
EXACT_UP_TO = 200_000
PROBES = 16  # the index's cells searched for each vector's neighbours
QUERY_BLOCK = 50_000  # vectors whose neighbours are sought at once (memory, progress)
Grouping = Callable[[np.ndarray, float], np.ndarray]


def relabelled(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..k-1 in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse]


def close_pairs(embeddings: np.ndarray, threshold: float,
                progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i < j) of unit vectors closer than `threshold`, and its distance: exactly up to
    EXACT_UP_TO vectors, a block of rows against the rows after it (half the products of a full
    matrix), compared as a similarity so only the pairs kept pay for a square root; above it, from
    an inverted-file index (`indexed_close_pairs`). `progress(work done, work in all)` is called
    after each block; it may raise to stop."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if len(embeddings) > EXACT_UP_TO:
        return indexed_close_pairs(embeddings, threshold, progress)
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


def indexed_close_pairs(embeddings: np.ndarray, threshold: float,
                        progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """close_pairs from faiss's inverted-file index (Meta's, MIT): the vectors split into 4 sqrt(N)
    cells by k-means, each one's neighbours sought in the PROBES cells nearest it, so a pair is
    missed only where its two faces fall in cells far apart. At 10^6 faces it takes three minutes
    where the exact blocks would take about 45; at 10^5 it finds 99.9% of the pairs they find
    (bench/grouping_scale.py). Exact distances of the pairs found."""
    import faiss  # only galleries and batches this large load it

    count, dim = embeddings.shape
    cells = int(4 * np.sqrt(count))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(count, min(count, 40 * cells), replace=False)
    index.train(embeddings[np.sort(sample)])
    index.add(embeddings)
    index.nprobe = PROBES
    if progress is not None:
        progress(0, count)  # the index is built
    floor = 1.0 - threshold * threshold / 2.0
    firsts, seconds, distances = [], [], []
    for start in range(0, count, QUERY_BLOCK):
        queries = embeddings[start : start + QUERY_BLOCK]
        limits, similarities, neighbours = index.range_search(queries, floor)
        rows = np.repeat(np.arange(start, start + len(queries)), np.diff(limits.astype(np.int64)))
        neighbours = neighbours.astype(np.int64)
        keep = neighbours != rows  # either face's search may find the pair (probing is not symmetric)
        firsts.append(np.minimum(rows[keep], neighbours[keep]))
        seconds.append(np.maximum(rows[keep], neighbours[keep]))
        distances.append(np.sqrt(np.clip(2.0 - 2.0 * similarities[keep].astype(np.float64), 0.0, 4.0)))
        if progress is not None:
            progress(start + len(queries), count)
    firsts, seconds, distances = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(distances)
    _, once = np.unique(firsts * count + seconds, return_index=True)
    return firsts[once], seconds[once], distances[once]


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


def average_linkage(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """UPGMA cut at `threshold`, on the sparse graph of pairs closer than it: two groups with no
    pair below the threshold have a mean at or above it, so only groups the graph links can ever
    merge, and the graph's components are never crossed (exact where the graph is: up to
    EXACT_UP_TO faces; above it a pair the index missed is a link missing). The mean between two linked groups is
    kept as the sum of all their pairwise distances: on a merge, the sums of the two merged groups
    with each neighbour add up, and a sum a merged group lacks (no link) is computed from the
    embeddings then. Memory and time grow with the pairs below the threshold, not N^2."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    firsts, seconds, distances = close_pairs(embeddings, threshold)
    count = len(embeddings)
    version = [0] * count
    groups = [[face] for face in range(count)]
    links: list[dict[int, float]] = [{} for _ in range(count)]  # links[a][b]: the sum of distances a-b
    heap = []
    for first, second, distance in zip(firsts.tolist(), seconds.tolist(), distances.tolist()):
        links[first][second] = links[second][first] = distance
        heap.append((distance, first, second, 0, 0))
    heapq.heapify(heap)

    def total(a: int, b: int) -> float:
        """The sum of the distances between the faces of groups a and b."""
        similarity = embeddings[groups[a]] @ embeddings[groups[b]].T
        return float(np.sqrt(np.clip(2.0 - 2.0 * similarity.astype(np.float64), 0.0, 4.0)).sum())

    while heap:
        _, a, b, version_a, version_b = heapq.heappop(heap)
        if version[a] != version_a or version[b] != version_b:
            continue  # a or b has merged since
        if len(links[a]) < len(links[b]):
            a, b = b, a  # the group with more links keeps its id
        del links[a][b], links[b][a]
        of_b, links[b] = links[b], {}
        for other in of_b:
            del links[other][b]
        merged = {other: held + (of_b.pop(other) if other in of_b else total(b, other))
                  for other, held in links[a].items()}
        for other, held in of_b.items():  # b's neighbours that were not a's
            merged[other] = held + total(a, other)
        groups[a] += groups[b]
        groups[b] = []
        version[a] += 1
        version[b] = -1
        links[a] = merged
        for other, held in merged.items():
            links[other][a] = held
            mean = held / (len(groups[a]) * len(groups[other]))
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
    # The contingency table's nonzero cells (faces of a person in a group), without the table itself.
    cells, joint = np.unique(group.astype(np.int64) * (person.max() + 1) + person, return_counts=True)
    cell_group, cell_person = np.divmod(cells, person.max() + 1)
    joint = joint.astype(np.float64)
    group_sizes, person_sizes = np.bincount(group).astype(np.float64), np.bincount(person).astype(np.float64)

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) / 2).sum())

    together = pairs(joint)
    pairwise_precision = together / pairs(group_sizes) if pairs(group_sizes) else 1.0
    pairwise_recall = together / pairs(person_sizes) if pairs(person_sizes) else 1.0
    squared = joint**2
    bcubed_precision = float((squared / group_sizes[cell_group]).sum() / len(labels))
    bcubed_recall = float((squared / person_sizes[cell_person]).sum() / len(labels))

    def f(precision: float, recall: float) -> float:
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    return {
        "pairwise_precision": pairwise_precision, "pairwise_recall": pairwise_recall,
        "pairwise_f": f(pairwise_precision, pairwise_recall),
        "bcubed_precision": bcubed_precision, "bcubed_recall": bcubed_recall,
        "bcubed_f": f(bcubed_precision, bcubed_recall),
        "groups": int(len(group_sizes)),
    }
