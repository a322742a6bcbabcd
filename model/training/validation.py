"""Verification scores of an encoder in training: on the validation identities each epoch (where
the test's threshold is chosen), and on the test identities or a protocol's pairs at the end."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.evaluation import metrics
from model.evaluation.protocols import (
    MAX_IMAGES_PER_IDENTITY,
    Pair,
    PairDistances,
    all_pair_distances,
    protocol_distances,
)
from model.training.data import FaceSet


@torch.inference_mode()
def embed(encoder: nn.Module, chips: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """L2-normalised embeddings of uint8 chips, in inference mode."""
    was_training = encoder.training
    encoder.eval()
    parts = [F.normalize(encoder(chips[i : i + batch_size].float()), dim=1) for i in range(0, len(chips), batch_size)]
    encoder.train(was_training)
    return torch.cat(parts).numpy()


def _by_identity(labels: torch.Tensor) -> dict[int, list[int]]:
    """Label -> its first MAX_IMAGES_PER_IDENTITY image indices, as in calibration: one LFW person
    with 236 images would otherwise give over 95% of a validation slice's genuine pairs."""
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(index)
    return {label: indices[:MAX_IMAGES_PER_IDENTITY] for label, indices in groups.items()}


def validate(encoder: nn.Module, faces: FaceSet) -> tuple[dict, PairDistances]:
    """Every genuine and impostor pair of the validation identities: EER, AUC and the threshold of
    best balanced accuracy, which the test is later scored at."""
    pairs = all_pair_distances(embed(encoder, faces.chips), _by_identity(faces.labels))
    distances, is_same = pairs.all
    eer, _ = metrics.equal_error_rate(distances, is_same)
    threshold = metrics.best_accuracy_threshold(distances, is_same)
    far, frr = metrics.error_rates(distances, is_same, threshold)
    return {"eer": eer, "auc": metrics.roc_auc(distances, is_same), "threshold": threshold,
            "balanced_accuracy": 1 - (far + frr) / 2}, pairs


def balanced_test_pairs(pairs: PairDistances, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every genuine pair and as many impostor pairs, drawn without replacement with `seed`."""
    rng = np.random.default_rng(seed)
    impostor = rng.choice(pairs.impostor, min(pairs.genuine.size, pairs.impostor.size), replace=False)
    distances = np.concatenate([pairs.genuine, impostor])
    return distances, np.concatenate([np.ones(pairs.genuine.size, bool), np.zeros(impostor.size, bool)])


def test_scores(encoder: nn.Module, faces: FaceSet, threshold: float, seed: int,
                protocol_pairs: list[Pair] | None = None) -> dict:
    """Scores on the protocol pairs if given, else on balanced pairs of the test identities."""
    embeddings = embed(encoder, faces.chips)
    if protocol_pairs is None:
        distances, is_same = balanced_test_pairs(all_pair_distances(embeddings, _by_identity(faces.labels)), seed)
    else:
        index = {path: i for i, path in enumerate(faces.paths)}
        distances = protocol_distances(embeddings, index, protocol_pairs)
        is_same = np.array([pair.same for pair in protocol_pairs])
    eer, eer_threshold = metrics.equal_error_rate(distances, is_same)
    far, frr = metrics.error_rates(distances, is_same, threshold)
    return {
        "pairs": {"genuine": int(is_same.sum()), "impostor": int((~is_same).sum())},
        "accuracy": metrics.accuracy(distances, is_same, threshold),
        "threshold": threshold,
        "far": far,
        "frr": frr,
        "eer": eer,
        "eer_threshold": eer_threshold,
        "auc": metrics.roc_auc(distances, is_same),
    }
