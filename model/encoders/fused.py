"""A fused encoder: several encoders, each on its own aligned chip of the same face, as one.

Each member's embedding is L2-normalised and scaled by its weight, and the results are concatenated.
After the pipeline's final normalisation, the squared distance of two faces is the weighted sum of
the members' squared distances, so the weights say how much each member's opinion counts. To the
service it is an ordinary encoder: one card, one distance, one set of operating points.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.encoders.registry import build_encoder, register_encoder


@register_encoder("fused")
class FusedEncoder(nn.Module):
    """`members`: [{"architecture": name, "params": {...}, "weight": w}, ...], in the order of the
    card's alignment templates; the state dict holds each member's under `members.<i>.`. Members
    may run in reduced precision; their embeddings are normalised and combined in float32."""

    def __init__(self, members: list[dict[str, Any]]):
        super().__init__()
        if not members:
            raise ValueError("a fused encoder needs at least one member")
        self.members = nn.ModuleList(
            build_encoder(member["architecture"], **member.get("params", {})) for member in members
        )
        self.weights = tuple(float(member["weight"]) for member in members)

    def forward(self, *chips: torch.Tensor) -> torch.Tensor:
        return self.embed_with_norms(*chips)[0]

    def embed_with_norms(self, *chips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused embeddings, and each member's raw embedding norm (N, members): a face the
        networks find little identity in gets small norms (model.faces.quality)."""
        if len(chips) != len(self.members):
            raise ValueError(f"expected {len(self.members)} chip batches, got {len(chips)}")
        raw = [member(batch).float() for member, batch in zip(self.members, chips)]
        fused = torch.cat([weight * F.normalize(out, dim=-1) for out, weight in zip(raw, self.weights)], dim=-1)
        return fused, torch.stack([out.norm(dim=-1) for out in raw], dim=-1)
