"""A trained encoder as an ordinary weights folder (encoder.pt + its card), which the service and
`facever evaluate` load like any shipped one."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.card import STATE_FILE, Architecture, EncoderCard, InputSpec, write_card
from model.encoders import reference_encoder
from model.evaluation.protocols import PairDistances
from model.files import write_atomic
from model.training.config import TrainingConfig
from model.training.data import Split, natural_key
from model.training.validation import embed
from model.types import AlignmentTemplate


def _identity_range(names: tuple[str, ...]) -> str:
    ordered = sorted(names, key=natural_key)
    return f"{ordered[0]}..{ordered[-1]}" if len(ordered) > 1 else ordered[0]


def write_weights(out_dir: Path, config: TrainingConfig, encoder: nn.Module, architecture: Architecture,
                  input_spec: InputSpec, template: AlignmentTemplate, detector: str, split: Split,
                  summary: dict[str, Any], val_pairs: PairDistances) -> EncoderCard:
    """encoder.pt + model.json, loaded back strictly before the folder counts as written. The
    card's only operating point is the validation threshold, its error rates measured on the test."""
    training, test = summary["training"], summary["test"]
    threshold = training["validation"]["threshold"]
    dataset = training["dataset"]
    card = EncoderCard(
        name=config.name,
        version="0.1.0",
        architecture=architecture,
        input=[input_spec],
        alignment=[template.model_copy(update={
            "name": f"the template of {config.template.from_card}, {template.size}x{template.size} chip"})],
        embedding_dim=int(embed(encoder, torch.zeros(2, 3, template.size, template.size, dtype=torch.uint8)).shape[1]),
        detector=detector,
        training_data=(
            f"{dataset}: trained on {len(split.train)} identities ({_identity_range(split.train)}), "
            f"epoch and threshold chosen on {len(split.val)} ({_identity_range(split.val)}); "
            f"the {len(split.test)} test identities ({_identity_range(split.test)}) were never seen"
        ),
        training=training,
        evaluation={f"{dataset}_test": test},
        calibration={"plain": {
            "default": "best_accuracy",
            "operating_points": {"best_accuracy": {
                "threshold": threshold,
                "description": "maximises (TAR + TNR) / 2 on all validation pairs",
                "chosen_on": val_pairs.rates(threshold),
                "held_out": {"far": test["far"], "frr": test["frr"]},
            }},
            "protocol": f"chosen on all pairs of the validation identities of {dataset}, measured on the test pairs",
        }},
        licence="research weights trained here; see training_data for the data's terms",
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(encoder.state_dict(), buffer)
    write_atomic(out_dir / STATE_FILE, buffer.getvalue())
    written = write_card(card, out_dir)
    reference_encoder(written)
    return written
