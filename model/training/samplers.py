"""The P x K batch sampler: every batch holds P identities with K images each.

Metric losses learn only from the pairs and triplets inside a batch; a uniformly drawn batch of
faces rarely holds two images of one person, while P x K guarantees K - 1 positives per image and
(P - 1) K negatives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class PKSampler:
    """Yields lists of dataset indices, `batches_per_epoch` per epoch (default: as many as cover
    the images once, at least one).

    Identities are drawn without replacement within a batch. An identity with fewer than K images
    gives all of them plus repeats drawn at random to fill K (a repeat is an exact positive pair
    and teaches nothing, but dropping such identities would bias the data towards the
    well-photographed); one with a single image cannot form a positive pair and is skipped.

    Draws come from a generator seeded with (seed, epoch), so a resumed run sees the very batches
    an uninterrupted one would have: call `set_epoch` before iterating.
    """

    def __init__(
        self,
        labels: Sequence[int],
        p: int,
        k: int,
        seed: int = 0,
        batches_per_epoch: int | None = None,
    ):
        if p < 2 or k < 2:
            raise ValueError("a P x K batch needs P >= 2 identities and K >= 2 images each")
        by_label: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_label.setdefault(int(label), []).append(index)
        self.groups = [np.array(indices) for _, indices in sorted(by_label.items()) if len(indices) >= 2]
        self.skipped = len(by_label) - len(self.groups)
        if len(self.groups) < p:
            raise ValueError(f"P = {p} identities per batch, but only {len(self.groups)} have 2+ images")
        self.p, self.k, self.seed = p, k, seed
        self.batches_per_epoch = batches_per_epoch or max(1, len(labels) // (p * k))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        for _ in range(self.batches_per_epoch):
            batch: list[int] = []
            for group in rng.choice(len(self.groups), self.p, replace=False):
                images = self.groups[group]
                if len(images) >= self.k:
                    chosen = rng.choice(images, self.k, replace=False)
                else:
                    chosen = np.concatenate([images, rng.choice(images, self.k - len(images))])
                batch.extend(int(i) for i in chosen)
            yield batch
