"""An encoder from its card: build the architecture the card names and load the weights it refers to."""

from __future__ import annotations

import torch
from torch import nn

from model.card import EncoderCard
from model.encoders.precision import with_precision
from model.encoders.registry import build_encoder


def load_encoder(card: EncoderCard, precision: str = "float32") -> nn.Module:
    """The card's encoder with its weights (its own and those it borrows), strictly loaded, ready
    for inference in `precision` (see model.encoders.precision)."""
    encoder = build_encoder(card.architecture.name, **card.architecture.params)
    state = {}
    for prefix, path in card.state_files().items():
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        state.update({prefix + key: value for key, value in loaded.items()})
    encoder.load_state_dict(state)
    return with_precision(encoder.eval().requires_grad_(False), precision)
