"""A card's encoder as inference runs it, on any engine: NumPy chips in, NumPy embeddings out.

One network per input of the card (a fused card's members, else the encoder itself), each behind
the engines' contract (model/engines/compile.py). A fused card's members are combined here as
model.encoders.fused.FusedEncoder combines them in torch: each member's embedding L2-normalised
and scaled by its weight, then concatenated, in float32. Torch-free: the serving path and the
evaluator run every engine through this one object.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.encoders.flip import with_mirrors
from model.engines.compile import Network

# F.normalize's floor on a norm, so a zero embedding stays zero instead of becoming NaN.
NORM_FLOOR = 1e-12


class InferenceEncoder:
    """`networks`, one per chip batch; `weights` None for a single encoder (its raw embedding is
    the encoder's), else a fused card's member weights."""

    def __init__(self, networks: Sequence[Network], weights: Sequence[float] | None = None):
        if weights is not None and len(weights) != len(networks):
            raise ValueError(f"{len(networks)} networks but {len(weights)} fusion weights")
        if weights is None and len(networks) != 1:
            raise ValueError("several networks are combined only with fusion weights")
        self.networks = list(networks)
        self.weights = None if weights is None else [np.float32(weight) for weight in weights]

    def embed_with_norms(self, *chips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw embeddings (N, D) float32 of the chips (one (N, 3, size, size) batch per network),
        and each network's raw embedding norm (N, networks): a face the networks find little
        identity in gets small norms (model.faces.quality)."""
        if len(chips) != len(self.networks):
            raise ValueError(f"expected {len(self.networks)} chip batches, got {len(chips)}")
        raw = [network(batch)[0].astype(np.float32, copy=False) for network, batch in zip(self.networks, chips)]
        norms = np.stack([np.linalg.norm(out, axis=-1) for out in raw], axis=-1)
        if self.weights is None:
            return raw[0], norms
        fused = [weight * out / np.maximum(norm, NORM_FLOOR)[:, None]
                 for out, norm, weight in zip(raw, norms.T, self.weights)]
        return np.concatenate(fused, axis=-1), norms

    def __call__(self, *chips: np.ndarray) -> np.ndarray:
        return self.embed_with_norms(*chips)[0]

    def embed_with_mirror(self, chips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Raw embeddings of the chips and of their mirror images, in one pass."""
        count = len(chips[0])
        both = self(*[with_mirrors(batch) for batch in chips])
        return both[:count], both[count:]
