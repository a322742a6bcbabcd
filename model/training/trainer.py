"""Train a face encoder with a metric-learning loss: one config file per experiment.

    facever train --config configs/att_contrastive.json [--resume] [--out DIR] [--runs DIR]

The config (model/training/config.py) names the data and its identity-disjoint split, the card
whose alignment template (and detector) the chips follow, the encoder (from scratch, or `init_from`
a weights folder with `freeze`-named early layers), the loss and miner, the P x K sampler, the
optimiser and schedule, augmentation, epochs and seed. The loop trains on the train identities;
its callbacks (model/training/callbacks.py) measure verification on the validation identities (all
their pairs: EER, best-accuracy threshold), append a line to `<runs>/<name>/metrics.jsonl` and write
a resumable checkpoint after each epoch. The last epoch's encoder is kept (a few validation
identities are too noisy to choose epochs on: on AT&T, picking the epoch of lowest validation EER
gave a worse test EER for every loss, 30.7% instead of 11.1% for the pairwise one, whose best
validation epoch was the first), scored on the test identities (every genuine pair and as many
impostor pairs, drawn with the seed) at the threshold chosen on validation, and written as an
ordinary encoder weights folder (model/training/export.py). Where the split names a protocol's pairs
instead of a count of test identities (`"test": {"pairs": "lfw/pairsDevTest.txt"}`, or one `fold`
of pairs.txt), their people are the test identities, validation is drawn from the others, and the
test is those pairs. Runs are seeded: a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from model.card import Architecture, InputSpec, load_card
from model.encoders import reference_encoder
from model.encoders.registry import build_encoder
from model.evaluation.protocols import Pair, identity_images, pair_people, read_pairs
from model.faces.detectors import build_detector
from model.paths import DEFAULT_DATA_DIR, REPO_ROOT, WEIGHTS_DIR
from model.training import validation
from model.training.callbacks import Checkpoint, LossCurve, MetricsLog, ProgressLine, TrainingState, Validation
from model.training.config import ProtocolTest, TrainingConfig, load_config
from model.training.data import Augment, load_face_set, load_or_make_split, natural_key
from model.training.export import write_weights
from model.training.losses import build_loss
from model.training.miners import build_miner
from model.training.samplers import PKSampler
from model.types import AlignmentTemplate

OPTIMISERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
CHECKPOINT = "checkpoint.pt"
METRICS_LOG = "metrics.jsonl"
LOSS_CURVE = "loss.png"
RUNS_DIR = REPO_ROOT / "runs"


def build_template(config: TrainingConfig) -> tuple[AlignmentTemplate, str]:
    """The template the chips are aligned to (the named card's, at the configured size) and the
    detector that card's templates were fitted to."""
    card = load_card(REPO_ROOT / config.template.from_card)
    size = config.template.size
    template = card.template if size in (None, card.template.size) else card.template.resized(size)
    return template, card.detector


def read_test_pairs(config: TrainingConfig, data_dir: Path) -> list[Pair] | None:
    """The protocol pairs the test is scored on, where the split's `test` names them (all of the
    file's pairs, or those of one 0-based `fold`); None where `test` is a count of identities."""
    test = config.data.split.test
    if not isinstance(test, ProtocolTest):
        return None
    pairs = read_pairs(data_dir / test.pairs)
    chosen = pairs if test.fold is None else [pair for pair in pairs if pair.fold == test.fold]
    if not chosen:
        raise ValueError(f"{test.pairs} has no fold {test.fold}")
    return chosen


def describe_test(config: TrainingConfig) -> str:
    test = config.data.split.test
    if isinstance(test, ProtocolTest):
        fold = "" if test.fold is None else f", fold {test.fold} (0-based)"
        pairs = f"the pairs of {test.pairs}{fold}, whose people are the test identities"
    else:
        pairs = "every genuine pair of the test identities and as many impostor pairs, drawn with the seed"
    return f"{pairs}; accuracy at the threshold chosen on validation; EER and AUC on these pairs"


def build_model(config: TrainingConfig, template: AlignmentTemplate | None) -> tuple[nn.Module, Architecture, InputSpec]:
    """The encoder to train, and its card's `architecture` and `input` entries."""
    section = config.encoder
    if section.init_from:
        card = load_card(REPO_ROOT / section.init_from)
        encoder = reference_encoder(card).train().requires_grad_(True)
        architecture, spec = card.architecture, card.input[0]
    else:
        encoder = build_encoder(section.name, **section.params)
        architecture = Architecture(name=section.name, params=section.params)
        spec = InputSpec(size=template.size, **encoder.input_spec)
    for prefix in section.freeze:
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


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Augmentation draws per (seed, epoch), so a resumed run augments as an uninterrupted one."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))


def _tuple_count(indices: tuple[torch.Tensor, ...]) -> int:
    """Pairs (positive + negative) or triplets a miner chose."""
    return len(indices[0]) + len(indices[2]) if len(indices) == 4 else len(indices[0])


def train(
    config: TrainingConfig,
    *,
    data_dir: Path = DEFAULT_DATA_DIR,
    out_dir: Path | None = None,
    runs_dir: Path = RUNS_DIR,
    resume: bool = False,
    chip_cache: Path | None = None,
    command: str = "",
    progress: bool = True,
) -> dict:
    """Run one experiment; returns the card's `training` and test `evaluation` entries."""
    name, seed = config.name, config.seed
    out_dir = out_dir or WEIGHTS_DIR / name
    run_dir = runs_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)

    # Data: chips of every split identity aligned once, then split. The identities go in natural
    # order, so every split of the same identities (each LFW fold) reads one cache.
    started = time.perf_counter()
    template, detector_name = build_template(config)
    images_dir = data_dir / config.data.images
    split_config = config.data.split
    protocol_pairs = read_test_pairs(config, data_dir)
    test_part = pair_people(protocol_pairs) if protocol_pairs else split_config.test
    split = load_or_make_split(REPO_ROOT / split_config.file if split_config.file else None,
                               list(identity_images(images_dir)), split_config.val, test_part, split_config.seed)
    if protocol_pairs and set(split.test) != test_part:
        raise ValueError(f"the test identities of {split_config.file} are not the people of the test pairs")
    cache = {"cache_dir": chip_cache} if chip_cache else {}
    faces = load_face_set(images_dir, sorted([*split.train, *split.val, *split.test], key=natural_key), template,
                          build_detector(detector_name), policy=config.data.policy, **cache)
    train_set, val_set, test_set = (faces.subset(getattr(split, part)) for part in ("train", "val", "test"))
    chips_seconds = time.perf_counter() - started

    # Model, loss, miner, sampler, optimiser: seeded, so two runs of one config start identically.
    torch.manual_seed(seed)
    encoder, architecture, input_spec = build_model(config, template)
    loss_fn = build_loss(config.loss.name, **config.loss.params)
    miner = build_miner(config.miner.name, **config.miner.params) if config.miner else None
    if miner is not None and miner.kind != loss_fn.kind:
        raise ValueError(f"the {config.loss.name} loss takes {loss_fn.kind}, the miner gives {miner.kind}")
    sampler = PKSampler(train_set.labels.tolist(), config.sampler.p, config.sampler.k, seed,
                        config.sampler.batches_per_epoch)
    augment = Augment(**config.augment)
    trainable = [p for p in [*encoder.parameters(), *loss_fn.parameters()] if p.requires_grad]
    optimiser = OPTIMISERS[config.optimiser.name](trainable, **config.optimiser.arguments)
    epochs, steps = config.epochs, len(sampler)
    warmup = config.schedule.warmup_epochs * steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: lr_factor(step, epochs * steps, warmup, config.schedule.name)
    )

    state = TrainingState(encoder, loss_fn, optimiser, scheduler, history=[])
    checkpoint = Checkpoint(run_dir / CHECKPOINT)
    if resume:
        checkpoint.restore(state)
    callbacks = [Validation(val_set), MetricsLog(run_dir / METRICS_LOG, state.history), checkpoint]
    if progress:
        callbacks.append(ProgressLine(name, epochs))
    callbacks.append(LossCurve(run_dir / LOSS_CURVE, f"{name}: {config.loss.name} loss"))

    for epoch in range(len(state.history), epochs):
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
        record = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)),
            "lr": optimiser.param_groups[0]["lr"],
            "train_seconds": round(train_seconds, 2),
            "images_per_second": round(len(losses) * sampler.p * sampler.k / train_seconds, 1),
            **({"mined_per_batch": float(np.mean(mined))} if mined else {}),
        }
        state.history.append(record)
        for callback in callbacks:
            callback.on_epoch_end(record, state)
    for callback in callbacks:
        callback.on_train_end(state)

    # The threshold is chosen on all validation pairs and the test pairs are scored at it.
    val, val_pairs = validation.validate(encoder, val_set)
    test = {"protocol": describe_test(config),
            **validation.test_scores(encoder, test_set, val["threshold"], seed, protocol_pairs)}
    history = state.history
    summary = {
        "training": {
            "dataset": Path(config.data.images).parts[0],  # lfw for lfw/images
            "identities": split.to_dict(),
            "images": {"train": len(train_set.labels), "val": len(val_set.labels), "test": len(test_set.labels),
                       "without_detected_face": int((~faces.detected).sum())},
            "config": config.model_dump(mode="json"),
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
    write_weights(out_dir, config, encoder, architecture, input_spec, template, detector_name, split, summary,
                  val_pairs)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="facever train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="experiment config, JSON or TOML")
    parser.add_argument("--resume", action="store_true", help="continue from <runs>/<name>/checkpoint.pt")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="folder holding the dataset folders")
    parser.add_argument("--out", type=Path, help="weights folder to write; default weights/<name>")
    parser.add_argument("--runs", type=Path, default=RUNS_DIR, help="checkpoints, metrics log, curve")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "facever train " + " ".join(sys.argv[1:] if argv is None else argv)
    config = load_config(args.config)
    summary = train(config, data_dir=args.data, out_dir=args.out, runs_dir=args.runs, resume=args.resume,
                    command=command.strip())
    test = summary["test"]
    print(f"{config.name}: test EER {test['eer']:.2%}, accuracy {test['accuracy']:.2%} at the validation "
          f"threshold {test['threshold']:.3f} ({summary['training']['timings']['training_seconds']:.0f} s "
          f"of training)")


if __name__ == "__main__":
    main()
