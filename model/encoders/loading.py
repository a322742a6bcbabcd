"""An encoder from its card, for the engine and arithmetic it is to run in.

The torch reference is always the card's architecture with its weights (its own and those it
borrows). Other engines run that reference compiled, or, where the card carries networks saved
ahead of time for the engine and precision asked for (int8, quantized by `facever quantize`), those.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.card import EncoderCard
from model.encoders.fused import FusedEncoder
from model.encoders.registry import build_encoder
from model.engines.compile import compile_network, load_compiled

# Chips per compiled batch in the example an engine traces; the batch stays dynamic.
EXAMPLE_BATCH = 2


def reference_encoder(card: EncoderCard) -> nn.Module:
    """The card's architecture in torch, float32, with its weights strictly loaded."""
    encoder = build_encoder(card.architecture.name, **card.architecture.params)
    state = {}
    for prefix, path in card.state_files().items():
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        state.update({prefix + key: value for key, value in loaded.items()})
    encoder.load_state_dict(state)
    return encoder.eval().requires_grad_(False)


def per_input_networks(card: EncoderCard, reference: nn.Module) -> list[tuple[nn.Module, list[Tensor]]]:
    """The reference's networks one per input of the card (a fused encoder's members, else the
    encoder itself), each with the example an engine traces it with: a batch of zero chips of that
    input's size (the batch stays dynamic)."""
    networks = reference.members if isinstance(reference, FusedEncoder) else [reference]
    return [(network, [torch.zeros(EXAMPLE_BATCH, 3, spec.size, spec.size)])
            for network, spec in zip(networks, card.input)]


def load_encoder(
    card: EncoderCard, precision: str = "float32", engine: str = "torch", threads: int = 1, streams: int = 1
) -> nn.Module:
    """The card's encoder, ready for inference in `precision` on `engine` (model.engines), taking
    and returning float32 (the encoder contract of model.encoders.registry); on a compiled engine,
    `streams` inferences at once, each on `threads`."""
    compiled = card.compiled
    if compiled is not None and (compiled.precision, compiled.engine) == (precision, engine):
        networks = [load_compiled(card.folder / file, precision=precision, threads=threads,
                                  streams=streams) for file in compiled.files]
        return _assembled(card, networks)
    if precision == "int8":
        raise ValueError(f"card {card.name!r} has no int8 networks for the {engine} engine (see `facever quantize`)")
    reference = reference_encoder(card)
    if engine == "torch":
        return compile_network(reference, [], engine="torch", precision=precision)
    networks = [
        compile_network(network, example, engine=engine, precision=precision, threads=threads, streams=streams)
        for network, example in per_input_networks(card, reference)
    ]
    return _assembled(card, networks)


def _assembled(card: EncoderCard, networks: list[nn.Module]) -> nn.Module:
    """One network per input: a fused card's members, combined as its FusedEncoder does; else the one."""
    if card.architecture.name == "fused":
        return FusedEncoder.of(networks, [member["weight"] for member in card.architecture.params["members"]])
    (network,) = networks
    return network
