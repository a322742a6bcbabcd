"""What happens around each training epoch, apart from the loop: validation, the metrics log, the
resumable checkpoint, a progress line, and the loss curve at the end. Each callback sees the
epoch's record (a dict it may add to) and the training state; they run in the order given."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.files import write_atomic
from model.training import validation
from model.training.data import FaceSet


@dataclass
class TrainingState:
    """What a checkpoint holds, and what the callbacks see."""

    encoder: nn.Module
    loss: nn.Module
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    history: list[dict[str, Any]]

    def state_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder.state_dict(), "loss": self.loss.state_dict(),
                "optimiser": self.optimiser.state_dict(), "scheduler": self.scheduler.state_dict(),
                "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.loss.load_state_dict(state["loss"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history[:] = state["history"]


class Callback:
    def on_epoch_end(self, record: dict[str, Any], state: TrainingState) -> None:
        """After each epoch; `record` already holds the epoch's training figures."""

    def on_train_end(self, state: TrainingState) -> None:
        """After the last epoch."""


class Validation(Callback):
    """Verification on the validation identities: EER, AUC and balanced accuracy into the record."""

    def __init__(self, faces: FaceSet):
        self.faces = faces

    def on_epoch_end(self, record: dict[str, Any], state: TrainingState) -> None:
        scores, _ = validation.validate(state.encoder, self.faces)
        record.update(val_eer=scores["eer"], val_auc=scores["auc"], val_balanced_accuracy=scores["balanced_accuracy"])


class MetricsLog(Callback):
    """One JSON line per epoch. Rewritten from the history at start, so a resumed run drops the
    lines of an epoch that never finished."""

    def __init__(self, path: Path, history: list[dict[str, Any]]):
        self.path = path
        path.write_text("".join(json.dumps(record) + "\n" for record in history))

    def on_epoch_end(self, record: dict[str, Any], state: TrainingState) -> None:
        with self.path.open("a") as log:
            log.write(json.dumps(record) + "\n")


class Checkpoint(Callback):
    """Everything a resumed run needs, written atomically after each epoch."""

    def __init__(self, path: Path):
        self.path = path

    def restore(self, state: TrainingState) -> None:
        if not self.path.exists():
            raise FileNotFoundError(f"--resume: no {self.path.name} in {self.path.parent}")
        state.load_state_dict(torch.load(self.path, map_location="cpu", weights_only=True))

    def on_epoch_end(self, record: dict[str, Any], state: TrainingState) -> None:
        buffer = io.BytesIO()
        torch.save(state.state_dict(), buffer)
        write_atomic(self.path, buffer.getvalue())


class ProgressLine(Callback):
    def __init__(self, name: str, epochs: int):
        self.name, self.epochs = name, epochs

    def on_epoch_end(self, record: dict[str, Any], state: TrainingState) -> None:
        print(f"{self.name} epoch {record['epoch']}/{self.epochs}: loss {record['loss']:.4f}, "
              f"val EER {record['val_eer']:.2%}, {record['images_per_second']:.0f} img/s", file=sys.stderr)


class LossCurve(Callback):
    """Mean training loss and validation EER per epoch, as a PNG."""

    def __init__(self, path: Path, title: str):
        self.path, self.title = path, title

    def on_train_end(self, state: TrainingState) -> None:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        history = state.history
        epochs = [record["epoch"] for record in history]
        figure, loss_axis = plt.subplots(figsize=(7, 4))
        loss_axis.plot(epochs, [record["loss"] for record in history], color="tab:blue", label="training loss")
        loss_axis.set_xlabel("epoch")
        loss_axis.set_ylabel("training loss (mean over the epoch)", color="tab:blue")
        eer_axis = loss_axis.twinx()
        eer_axis.plot(epochs, [record["val_eer"] for record in history], color="tab:red", label="validation EER")
        eer_axis.set_ylabel("validation EER", color="tab:red")
        eer_axis.set_ylim(bottom=0)
        loss_axis.set_title(self.title)
        loss_axis.grid(True, alpha=0.3)
        figure.tight_layout()
        figure.savefig(self.path, dpi=110)
        plt.close(figure)
