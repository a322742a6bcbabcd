"""The encoder card: a weights folder is a state dict (`encoder.pt`) plus its metadata (`model.json`).

The card is the single source of truth the service, the evaluator and the calibrator share: the
architecture to build, the alignment template its chips need, the distance, the calibrated operating
points with their measured error rates, and the evaluation results with the commands that made them.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.encoders import build_encoder
from model.encoders.precision import with_precision
from model.faces.detectors import DEFAULT_DETECTOR
from model.faces.align import AlignmentTemplate

CARD_FILE = "model.json"
STATE_FILE = "encoder.pt"

# Embeddings are L2-normalised and compared by Euclidean distance (0 = identical, 2 = opposite):
# the distance a client computes from /embed vectors is the one /verify reports.
DISTANCE = "euclidean_l2_normalised"


def tta_mode(flip_tta: bool) -> str:
    """Calibration and evaluation are kept per inference mode, since flip TTA moves distances."""
    return "flip" if flip_tta else "plain"


@dataclass(frozen=True)
class OperatingPoint:
    """A named threshold with its error rates measured on identities it was not chosen on."""

    name: str
    threshold: float
    far: float
    frr: float
    description: str

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> OperatingPoint:
        held_out = data["held_out"]
        return cls(
            name=name,
            threshold=float(data["threshold"]),
            far=float(held_out["far"]),
            frr=float(held_out["frr"]),
            description=data.get("description", ""),
        )


@dataclass(frozen=True)
class Calibration:
    """Operating points and the distance-to-probability map of one inference mode."""

    default: str
    operating_points: dict[str, OperatingPoint]
    logistic: tuple[float, float] | None  # p(same) = sigmoid(a * distance + b)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        points = {
            name: OperatingPoint.from_dict(name, point)
            for name, point in data["operating_points"].items()
        }
        logistic = data.get("probability")
        return cls(
            default=data["default"],
            operating_points=points,
            logistic=(float(logistic["a"]), float(logistic["b"])) if logistic else None,
        )

    def probability_same(self, distance: float) -> float | None:
        if self.logistic is None:
            return None
        a, b = self.logistic
        logit = a * distance + b
        if logit < 0:  # the two branches keep exp() from overflowing
            return math.exp(logit) / (1.0 + math.exp(logit))
        return 1.0 / (1.0 + math.exp(-logit))


@dataclass(frozen=True)
class EncoderCard:
    folder: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def version(self) -> str:
        return self.data["version"]

    @property
    def embedding_dim(self) -> int:
        return int(self.data["embedding_dim"])

    @property
    def template(self) -> AlignmentTemplate:
        """The template of a single-input encoder (the first of `templates`)."""
        return self.templates[0]

    @property
    def templates(self) -> tuple[AlignmentTemplate, ...]:
        """One template per encoder input: a fused encoder sees each member's own chip of the face."""
        alignment = self.data["alignment"]
        entries = alignment if isinstance(alignment, list) else [alignment]
        return tuple(AlignmentTemplate.from_dict(entry) for entry in entries)

    @property
    def detector(self) -> str:
        """The detector whose landmarks the alignment templates were fitted to."""
        return self.data.get("detector", DEFAULT_DETECTOR)

    @property
    def precision(self) -> str:
        """The precision the card's evaluation and calibration were measured in."""
        return self.data.get("inference", {}).get("precision", "float32")

    def calibration(self, flip_tta: bool) -> Calibration | None:
        mode = self.data.get("calibration", {}).get(tta_mode(flip_tta))
        return Calibration.from_dict(mode) if mode else None

    def state_files(self) -> dict[str, Path]:
        """State-dict key prefix -> file: the folder's own `encoder.pt` (prefix ""), plus the state
        of other weights folders it borrows (`borrowed_state`: prefix -> relative folder), so a fused
        encoder refers to its members' weights instead of carrying a copy of them."""
        files = {}
        if (self.folder / STATE_FILE).exists():
            files[""] = self.folder / STATE_FILE
        for prefix, folder in self.data.get("borrowed_state", {}).items():
            files[prefix] = (self.folder / folder / STATE_FILE).resolve()
        return files

    def load_encoder(self, precision: str = "float32") -> nn.Module:
        """Build the architecture the card names and load its weights, ready for inference in
        `precision` (see model.encoders.precision)."""
        architecture = self.data["architecture"]
        encoder = build_encoder(architecture["name"], **architecture.get("params", {}))
        state = {}
        for prefix, path in self.state_files().items():
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            state.update({prefix + key: value for key, value in loaded.items()})
        encoder.load_state_dict(state)
        return with_precision(encoder.eval().requires_grad_(False), precision)


def load_card(folder: str | Path) -> EncoderCard:
    folder = Path(folder)
    path = folder / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {CARD_FILE} in {folder}: not an encoder weights folder")
    return EncoderCard(folder=folder, data=json.loads(path.read_text()))


def update_card(folder: str | Path, path: tuple[str, ...], value: Any) -> None:
    """Set one nested key of a card (e.g. ("calibration", "flip")), keeping everything else."""
    card_path = Path(folder) / CARD_FILE
    data = json.loads(card_path.read_text()) if card_path.exists() else {}
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    tmp = card_path.with_name(f".{card_path.name}.tmp")  # the service may be reading the card
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, card_path)
