"""Train a face encoder with a metric-learning loss: one config file per experiment.

    python -m model.train --config configs/att_contrastive.json [--resume] [--out DIR] [--runs DIR]

The config (JSON, or TOML by suffix) names the data and its identity-disjoint split, the alignment
template, the encoder (from scratch, or `init_from` a weights folder with `freeze`-named early
layers), the loss and miner, the P x K sampler, the optimiser and schedule, augmentation, epochs and
seed; keys it leaves out take DEFAULTS. Each epoch trains on the train identities, measures
verification on the validation identities (all their pairs: EER, best-accuracy threshold), appends a
line to `<runs>/<name>/metrics.jsonl` and writes a resumable checkpoint. The last epoch's encoder is
kept (a few validation identities are too noisy to choose epochs on: on AT&T, picking the epoch of
lowest validation EER gave a worse test EER for every loss, 30.7% instead of 11.1% for the pairwise
one, whose best validation epoch was the first), scored on the test identities (every
genuine pair and as many impostor pairs, drawn with the seed) at the threshold chosen on
validation, and written as an ordinary encoder weights folder (encoder.pt + model.json) that the
service and `facever evaluate` load like any other. Where the split names a protocol's pairs instead
of a count of test identities (`"test": {"pairs": "lfw/pairsDevTest.txt"}`, or one `fold` of
pairs.txt), their people are the test identities, validation is drawn from the others, and the test
is those pairs. Runs are seeded: a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import platform
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from model import metrics
from model.calibrate import MAX_IMAGES_PER_IDENTITY, PairDistances, all_pair_distances
from model.card import CARD_FILE, DISTANCE, STATE_FILE, load_card
from model.data import Augment, FaceSet, Split, load_face_set, load_or_make_split, natural_key, resize_template
from model.encoders import build_encoder
from model.evaluate import pair_distances
from model.faces.align import AlignmentTemplate
from model.lfw import DEFAULT_DATA_DIR, REPO_ROOT, Pair, identity_images, pair_people, read_pairs
from model.losses import build_loss
from model.miners import build_miner
from model.samplers import PKSampler

DEFAULTS: dict[str, Any] = {
    "name": None,  # default: the config file's stem; names weights/<name> and runs/<name>
    "seed": 0,
    "epochs": 40,
    "data": {
        "images": "att_faces",  # identity folders, relative to --data
        # file None: no split file, made afresh each run. test: a count of identities, or the people of
        # protocol pairs, {"pairs": a file under --data, "fold": one 0-based fold of it or None}.
        "split": {"file": "configs/splits/att_faces.json", "val": 5, "test": 5, "seed": None},
        "policy": "central",
    },
    "template": {"from_card": "weights/dlib-resnet-v1", "size": None},  # size None: the card's
    "encoder": {"name": "compact_cnn", "params": {}, "init_from": None, "freeze": []},
    "loss": {"name": "contrastive", "params": {}},
    "miner": None,  # {"name": ..., "params": {...}}; None: every pair or triplet of the batch
    "sampler": {"p": 10, "k": 5, "batches_per_epoch": None},
    "optimiser": {"name": "adamw", "lr": 1e-3, "weight_decay": 5e-4},
    "schedule": {"name": "cosine", "warmup_epochs": 1},
    "augment": {},  # Augment's fields; {} takes its defaults
}
OPTIMISERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
CHECKPOINT = "checkpoint.pt"
METRICS_LOG = "metrics.jsonl"
LOSS_CURVE = "loss.png"


# -- configuration ----------------------------------------------------------------------------------


def _merge(defaults: dict, overrides: dict, where: str = "config") -> dict:
    """Defaults updated by overrides, recursively for sections; unknown keys are refused, since a
    misspelt key would otherwise silently train with the default."""
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if key not in defaults:
            raise ValueError(f"unknown key {key!r} in {where}; known: {sorted(defaults)}")
        default = defaults[key]
        open_section = key in ("params", "augment", "optimiser") or default is None
        if isinstance(default, dict) and isinstance(value, dict) and not open_section:
            merged[key] = _merge(default, value, f"{where}.{key}")
        elif isinstance(default, dict) and isinstance(value, dict):
            merged[key] = {**default, **value}
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path) -> dict:
    path = Path(path)
    text = path.read_text()
    raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    config = _merge(DEFAULTS, raw)
    config["name"] = config["name"] or path.stem
    return config


def build_template(config: dict) -> AlignmentTemplate:
    section = config["template"]
    template = load_card(REPO_ROOT / section["from_card"]).template
    size = section["size"]
    return template if size in (None, template.size) else resize_template(template, size)


def read_test_pairs(config: dict, data_dir: Path) -> list[Pair] | None:
    """The protocol pairs the test is scored on, where the split's `test` names them (all of the
    file's pairs, or those of one 0-based `fold`); None where `test` is a count of identities."""
    test = config["data"]["split"]["test"]
    if isinstance(test, int):
        return None
    unknown = set(test) - {"pairs", "fold"}
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r} in config.data.split.test; known: ['fold', 'pairs']")
    pairs = read_pairs(data_dir / test["pairs"])
    fold = test.get("fold")
    chosen = pairs if fold is None else [pair for pair in pairs if pair.fold == fold]
    if not chosen:
        raise ValueError(f"{test['pairs']} has no fold {fold}")
    return chosen


def describe_test(config: dict) -> str:
    test = config["data"]["split"]["test"]
    if isinstance(test, int):
        pairs = "every genuine pair of the test identities and as many impostor pairs, drawn with the seed"
    else:
        fold = "" if test.get("fold") is None else f", fold {test['fold']} (0-based)"
        pairs = f"the pairs of {test['pairs']}{fold}, whose people are the test identities"
    return f"{pairs}; accuracy at the threshold chosen on validation; EER and AUC on these pairs"


def build_model(config: dict, template: AlignmentTemplate) -> tuple[nn.Module, dict, dict]:
    """The encoder to train, its card's `architecture` and `input` entries."""
    section = config["encoder"]
    if section["init_from"]:
        card = load_card(REPO_ROOT / section["init_from"])
        encoder = card.load_encoder().train().requires_grad_(True)
        architecture, spec = card.data["architecture"], card.data["input"]
    else:
        encoder = build_encoder(section["name"], **section["params"])
        architecture = {"name": section["name"], "params": section["params"]}
        spec = {"size": template.size, **encoder.input_spec}
    for prefix in section["freeze"]:
        frozen = [p for name, p in encoder.named_parameters() if name == prefix or name.startswith(prefix + ".")]
        if not frozen:
            raise ValueError(f"encoder.freeze: no parameter is named {prefix!r} or under it")
        for parameter in frozen:
            parameter.requires_grad_(False)
    return encoder, architecture, spec


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Linear warm-up to the base rate, then constant or a cosine decay to zero at the last step."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    raise ValueError(f"unknown schedule {schedule!r}; known: constant, cosine")


# -- verification -----------------------------------------------------------------------------------


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
        distances = pair_distances(embeddings, index, protocol_pairs)
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


# -- training ---------------------------------------------------------------------------------------


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Augmentation draws per (seed, epoch), so a resumed run augments as an uninterrupted one."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))


def _tuple_count(indices: tuple[torch.Tensor, ...]) -> int:
    """Pairs (positive + negative) or triplets a miner chose."""
    return len(indices[0]) + len(indices[2]) if len(indices) == 4 else len(indices[0])


def _save_atomically(obj: Any, path: Path) -> None:
    partial = path.with_suffix(".partial")
    torch.save(obj, partial)
    partial.replace(path)


def plot_curve(history: list[dict], path: Path, title: str) -> None:
    """Mean training loss and validation EER per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [record["epoch"] for record in history]
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.plot(epochs, [record["loss"] for record in history], color="tab:blue", label="training loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss (mean over the epoch)", color="tab:blue")
    eer_axis = loss_axis.twinx()
    eer_axis.plot(epochs, [record["val_eer"] for record in history], color="tab:red", label="validation EER")
    eer_axis.set_ylabel("validation EER", color="tab:red")
    eer_axis.set_ylim(bottom=0)
    loss_axis.set_title(title)
    loss_axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def train(
    config: dict,
    *,
    data_dir: Path = DEFAULT_DATA_DIR,
    out_dir: Path | None = None,
    runs_dir: Path = REPO_ROOT / "runs",
    resume: bool = False,
    chip_cache: Path | None = None,
    command: str = "",
    progress: bool = True,
) -> dict:
    """Run one experiment; returns the card's `training` and test `evaluation` entries."""
    name, seed = config["name"], config["seed"]
    out_dir = out_dir or REPO_ROOT / "weights" / name
    run_dir = runs_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)

    # Data: chips of every split identity aligned once, then split. The identities go in natural
    # order, so every split of the same identities (each LFW fold) reads one cache.
    started = time.perf_counter()
    template = build_template(config)
    images_dir = data_dir / config["data"]["images"]
    split_config = config["data"]["split"]
    protocol_pairs = read_test_pairs(config, data_dir)
    test_part = pair_people(protocol_pairs) if protocol_pairs else split_config["test"]
    split = load_or_make_split(REPO_ROOT / split_config["file"] if split_config["file"] else None,
                               list(identity_images(images_dir)), split_config["val"], test_part, split_config["seed"])
    if protocol_pairs and set(split.test) != test_part:
        raise ValueError(f"the test identities of {split_config['file']} are not the people of the test pairs")
    cache = {"cache_dir": chip_cache} if chip_cache else {}
    faces = load_face_set(images_dir, sorted([*split.train, *split.val, *split.test], key=natural_key), template,
                          policy=config["data"]["policy"], **cache)
    train_set, val_set, test_set = (faces.subset(getattr(split, part)) for part in ("train", "val", "test"))
    chips_seconds = time.perf_counter() - started

    # Model, loss, miner, sampler, optimiser: seeded, so two runs of one config start identically.
    torch.manual_seed(seed)
    encoder, architecture, input_spec = build_model(config, template)
    loss_fn = build_loss(config["loss"]["name"], **config["loss"]["params"])
    miner = build_miner(config["miner"]["name"], **config["miner"].get("params", {})) if config["miner"] else None
    if miner is not None and miner.kind != loss_fn.kind:
        raise ValueError(f"the {config['loss']['name']} loss takes {loss_fn.kind}, the miner gives {miner.kind}")
    sampler = PKSampler(train_set.labels.tolist(), config["sampler"]["p"], config["sampler"]["k"], seed,
                        config["sampler"]["batches_per_epoch"])
    augment = Augment(**config["augment"])
    optimiser_config = dict(config["optimiser"])
    optimiser_class = OPTIMISERS[optimiser_config.pop("name")]
    trainable = [p for p in [*encoder.parameters(), *loss_fn.parameters()] if p.requires_grad]
    optimiser = optimiser_class(trainable, **optimiser_config)
    epochs, steps = config["epochs"], len(sampler)
    warmup = config["schedule"]["warmup_epochs"] * steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: lr_factor(step, epochs * steps, warmup, config["schedule"]["name"])
    )

    history: list[dict] = []
    checkpoint_path = run_dir / CHECKPOINT
    if resume:
        if not checkpoint_path.exists():
            raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {run_dir}")
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        encoder.load_state_dict(state["encoder"])
        loss_fn.load_state_dict(state["loss"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        history = state["history"]
    # The log is rewritten from the checkpoint, dropping the lines of an epoch that never finished.
    (run_dir / METRICS_LOG).write_text("".join(json.dumps(record) + "\n" for record in history))

    for epoch in range(len(history), epochs):
        epoch_started = time.perf_counter()
        sampler.set_epoch(epoch)
        generator = _epoch_generator(seed, epoch)
        encoder.train()
        losses, mined = [], []
        # disable=None: no bar where stderr is not a terminal (logs keep the per-epoch lines only).
        bar = tqdm(sampler, desc=f"{name} {epoch + 1}/{epochs}", unit="batch", leave=False,
                   disable=None if progress else True)
        for batch in bar:
            chips = augment(train_set.chips[batch].float(), generator)
            labels = train_set.labels[batch]
            embeddings = F.normalize(encoder(chips), dim=1)
            indices = miner(embeddings, labels) if miner else None
            loss = loss_fn(embeddings, labels, indices)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(loss.item())
            if indices is not None:
                mined.append(_tuple_count(indices))
            rate = len(losses) * len(batch) / (time.perf_counter() - epoch_started)
            bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{rate:.0f}")
        train_seconds = time.perf_counter() - epoch_started
        val, _ = validate(encoder, val_set)
        record = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)),
            "lr": optimiser.param_groups[0]["lr"],
            "val_eer": val["eer"],
            "val_auc": val["auc"],
            "val_balanced_accuracy": val["balanced_accuracy"],
            "train_seconds": round(train_seconds, 2),
            "images_per_second": round(len(losses) * sampler.p * sampler.k / train_seconds, 1),
            **({"mined_per_batch": float(np.mean(mined))} if mined else {}),
        }
        history.append(record)
        with (run_dir / METRICS_LOG).open("a") as log:
            log.write(json.dumps(record) + "\n")
        _save_atomically(
            {"encoder": encoder.state_dict(), "loss": loss_fn.state_dict(), "optimiser": optimiser.state_dict(),
             "scheduler": scheduler.state_dict(), "history": history},
            checkpoint_path,
        )
        if progress:
            tqdm.write(f"{name} epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f}, val EER {val['eer']:.2%}, "
                       f"{record['images_per_second']:.0f} img/s", file=sys.stderr)
    plot_curve(history, run_dir / LOSS_CURVE, f"{name}: {config['loss']['name']} loss")

    # The threshold is chosen on all validation pairs and the test pairs are scored at it.
    val, val_pairs = validate(encoder, val_set)
    test = {"protocol": describe_test(config),
            **test_scores(encoder, test_set, val["threshold"], seed, protocol_pairs)}
    summary = {
        "training": {
            "dataset": Path(config["data"]["images"]).parts[0],  # lfw for lfw/images
            "identities": split.to_dict(),
            "images": {"train": len(train_set.labels), "val": len(val_set.labels), "test": len(test_set.labels),
                       "without_detected_face": int((~faces.detected).sum())},
            "config": config,
            "epochs_trained": len(history),
            "validation": val,
            "parameters": sum(p.numel() for p in encoder.parameters()),
            "timings": {"chips_seconds": round(chips_seconds, 1),
                        "training_seconds": round(sum(r["train_seconds"] for r in history), 1),
                        "images_per_second": float(np.mean([r["images_per_second"] for r in history]))},
            "command": command,
            "date": dt.date.today().isoformat(),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        },
        "test": test,
    }
    write_weights(out_dir, name, encoder, architecture, input_spec, template, split, summary, val_pairs)
    return summary


def _identity_range(names: tuple[str, ...]) -> str:
    ordered = sorted(names, key=natural_key)
    return f"{ordered[0]}..{ordered[-1]}" if len(ordered) > 1 else ordered[0]


def write_weights(out_dir: Path, name: str, encoder: nn.Module, architecture: dict, input_spec: dict,
                  template: AlignmentTemplate, split: Split, summary: dict, val_pairs: PairDistances) -> None:
    """encoder.pt + model.json, loaded back strictly before the folder counts as written."""
    training, test = summary["training"], summary["test"]
    threshold = training["validation"]["threshold"]
    dataset = training["dataset"]
    card = {
        "name": name,
        "version": "0.1.0",
        "architecture": architecture,
        "input": input_spec,
        "alignment": {**template.to_dict(),
                      "template": f"the template of {training['config']['template']['from_card']}, "
                                  f"{template.size}x{template.size} chip"},
        "embedding_dim": int(embed(encoder, torch.zeros(2, 3, template.size, template.size, dtype=torch.uint8)).shape[1]),
        "distance": DISTANCE,
        "inference": {"flip_tta": False},
        "training_data": (
            f"{dataset}: trained on {len(split.train)} identities ({_identity_range(split.train)}), "
            f"epoch and threshold chosen on {len(split.val)} ({_identity_range(split.val)}); "
            f"the {len(split.test)} test identities ({_identity_range(split.test)}) were never seen"
        ),
        "training": training,
        "evaluation": {f"{dataset}_test": test},
        "calibration": {"plain": {
            "default": "best_accuracy",
            "operating_points": {"best_accuracy": {
                "threshold": threshold,
                "description": "maximises (TAR + TNR) / 2 on all validation pairs",
                "chosen_on": val_pairs.rates(threshold),
                "held_out": {"far": test["far"], "frr": test["frr"]},
            }},
            "protocol": f"chosen on all pairs of the validation identities of {dataset}, "
                        "measured on the test pairs",
        }},
        "licence": "research weights trained here; see training_data for the data's terms",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(encoder.state_dict(), out_dir / STATE_FILE)
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    load_card(out_dir).load_encoder()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="facever train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="experiment config, JSON or TOML")
    parser.add_argument("--resume", action="store_true", help="continue from <runs>/<name>/checkpoint.pt")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="folder holding the dataset folders")
    parser.add_argument("--out", type=Path, help="weights folder to write; default weights/<name>")
    parser.add_argument("--runs", type=Path, default=REPO_ROOT / "runs", help="checkpoints, metrics log, curve")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python -m model.train " + " ".join(sys.argv[1:] if argv is None else argv)
    config = load_config(args.config)
    summary = train(config, data_dir=args.data, out_dir=args.out, runs_dir=args.runs, resume=args.resume,
                    command=command.strip())
    test = summary["test"]
    print(f"{config['name']}: test EER {test['eer']:.2%}, accuracy {test['accuracy']:.2%} at the validation "
          f"threshold {test['threshold']:.3f} ({summary['training']['timings']['training_seconds']:.0f} s "
          f"of training)")


if __name__ == "__main__":
    main()
