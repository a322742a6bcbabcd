"""An encoder from its card: the torch reference, or what inference runs on an engine.

The torch reference is always the card's architecture with its weights (its own and those it
borrows): what training, conversion and the parity tests use. Inference runs an InferenceEncoder:
where the card carries networks saved ahead of time for the engine and precision asked for (int8,
quantized by `facever quantize`), those, read without torch; else the reference, as torch runs it
or compiled by OpenVINO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.card import EncoderCard
from model.encoders.inference import InferenceEncoder
from model.engines.compile import check_engine, compile_network, load_compiled, require_torch

if TYPE_CHECKING:
    from torch import Tensor, nn

# Chips per compiled batch in the example an engine traces; the batch stays dynamic.
EXAMPLE_BATCH = 2


def reference_encoder(card: EncoderCard) -> nn.Module:
    """The card's architecture in torch, float32, with its weights strictly loaded."""
    require_torch(f"card {card.name!r}'s torch reference")
    import torch

    from model.encoders.registry import build_encoder

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
    import torch

    from model.encoders.fused import FusedEncoder

    networks = reference.members if isinstance(reference, FusedEncoder) else [reference]
    return [(network, [torch.zeros(EXAMPLE_BATCH, 3, spec.size, spec.size)])
            for network, spec in zip(networks, card.input)]


def load_encoder(
    card: EncoderCard, precision: str = "float32", engine: str = "torch", threads: int = 1, streams: int = 1
) -> InferenceEncoder:
    """The card's encoder, ready for inference in `precision` on `engine` (model.engines), taking
    float32 chips of 0..255 and returning float32 raw embeddings; on a compiled engine, `streams`
    inferences at once, each on `threads`."""
    check_engine(engine)
    compiled = card.compiled
    if compiled is not None and (compiled.precision, compiled.engine) == (precision, engine):
        networks = [load_compiled(card.folder / file, precision=precision, threads=threads, streams=streams)
                    for file in compiled.files]
    elif precision == "int8":
        raise ValueError(f"card {card.name!r} has no int8 networks for the {engine} engine (see `facever quantize`)")
    else:
        networks = [
            compile_network(network, example, engine=engine, precision=precision, threads=threads, streams=streams)
            for network, example in per_input_networks(card, reference_encoder(card))
        ]
    return InferenceEncoder(networks, fusion_weights(card))


def fusion_weights(card: EncoderCard) -> list[float] | None:
    """A fused card's member weights, in the order of its inputs; None for a single encoder."""
    if card.architecture.name != "fused":
        return None
    return [member["weight"] for member in card.architecture.params["members"]]
