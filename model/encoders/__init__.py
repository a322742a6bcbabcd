"""Face encoders: the registry, each network, the fused encoder, inference precision, loading from a card."""

from model.encoders.loading import load_encoder
from model.encoders.registry import ENCODERS, build_encoder, register_encoder

__all__ = ["ENCODERS", "build_encoder", "load_encoder", "register_encoder"]
