"""Face encoders: the registry, each network, the fused encoder, loading from a card (the torch
reference, or the engine-neutral InferenceEncoder that serving runs)."""

from model.encoders.loading import load_encoder, reference_encoder

__all__ = ["load_encoder", "reference_encoder"]
