"""Compare metric-learning losses: train one config per loss, score each on its unseen test identities.

    python -m experiments.training_losses                       # configs/att_*.json -> att_losses.json
    python -m experiments.training_losses --configs configs/att_triplet_semihard.json --retrain
    python -m experiments.training_losses --configs configs/lfw_view1_*.json --threads 2 \
        --out bench/results/training/lfw_view1_losses.json  # LFW View 1: scored on pairsDevTest.txt

Every config is trained with `facever train` (--threads torch threads) into runs/<name>/, unless
runs/<name>/ already holds a finished run of the very same config. The table gives, per loss, the
test EER and the test accuracy at the threshold chosen on the validation identities, with the
training time.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import sys
from pathlib import Path

from experiments.common import parse, study_parser
from model.card import CARD_FILE, load_card
from model.evaluation.protocols import MAX_IMAGES_PER_IDENTITY
from model.paths import REPO_ROOT, REPORTS_DIR
from model.training.config import TrainingConfig, load_config
from model.training.trainer import train

RESULTS = REPORTS_DIR / "training"


def finished_run(weights: Path, config: TrainingConfig) -> dict | None:
    """The card's training summary if `weights` holds a finished run of exactly this config."""
    if not (weights / CARD_FILE).exists():
        return None
    card = load_card(weights)
    if card.training is None or card.training["config"] != config.model_dump(mode="json"):
        return None
    return {"training": card.training, "test": card.evaluation[f"{card.training['dataset']}_test"]}


def repo_relative(path: Path) -> str:
    """`path` relative to the repository where it lies inside it, for commands others can rerun."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def train_command(config_path: Path, weights: Path, threads: int) -> str:
    """The `facever train` command that trains this run by itself."""
    return (f"facever train --config {repo_relative(config_path)} --out {repo_relative(weights)} "
            f"--threads {threads}")


def row(config_path: Path, weights: Path, summary: dict, threads: int) -> dict:
    training, test = summary["training"], summary["test"]
    config = training["config"]
    miner = config["miner"]
    return {
        "config": repo_relative(config_path),
        "name": config["name"],
        "loss": config["loss"],
        "miner": miner["name"] if miner else "none (all pairs / triplets of the batch)",
        "test_eer": test["eer"],
        "test_accuracy": test["accuracy"],
        "test_auc": test["auc"],
        "test_pairs": test["pairs"],
        "threshold_from_validation": test["threshold"],
        "validation_eer": training["validation"]["eer"],
        "epochs": config["epochs"],
        "training_seconds": training["timings"]["training_seconds"],
        "images_per_second": training["timings"]["images_per_second"],
        "parameters": training["parameters"],
        "command": train_command(config_path, weights, threads),
    }


def plot(rows: list[dict], runs: Path, path: Path) -> None:
    """Validation EER per epoch, one line per loss."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for entry in rows:
        log = [json.loads(line) for line in (runs / entry["name"] / "metrics.jsonl").read_text().splitlines()]
        axis.plot([r["epoch"] for r in log], [r["val_eer"] for r in log], label=entry["loss"]["name"] + (
            f" ({entry['miner']})" if not entry["miner"].startswith("none") else ""))
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation EER")
    axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    axis.legend()
    axis.set_title("validation EER while training, per loss")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = study_parser(__doc__, threads=1, training_runs=True)
    parser.add_argument("--configs", type=Path, nargs="+", default=sorted((REPO_ROOT / "configs").glob("att_*.json")))
    parser.add_argument("--out", type=Path, default=RESULTS / "att_losses.json")
    args = parse(parser, argv)

    rows = []
    for config_path in args.configs:
        config = load_config(config_path)
        weights = args.runs / config.name / "weights"
        summary = None if args.retrain else finished_run(weights, config)
        if summary is None:
            summary = train(config, data_dir=args.data, out_dir=weights, runs_dir=args.runs,
                            command=train_command(config_path, weights, args.threads))
        rows.append(row(config_path, weights, summary, args.threads))

    split = summary["training"]["identities"]
    report = {
        "protocol": (
            f"{summary['training']['dataset']}: train on {len(split['train'])} identities for the config's "
            f"epochs (the last epoch is kept), choose the threshold (best balanced accuracy over all validation "
            f"pairs, at most {MAX_IMAGES_PER_IDENTITY} images per identity) on {len(split['val'])} validation "
            f"identities, test on {len(split['test'])} unseen identities: {summary['test']['protocol']}; distance: "
            "Euclidean between L2-normalised embeddings"
        ),
        "identities": {"train": len(split["train"]), "val": split["val"], "test": split["test"]},
        "results": rows,
        "command": "python -m experiments.training_losses " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {args.threads} torch thread(s), shared with other work",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(rows, args.runs, args.out.with_suffix(".png"))

    print(f"{'loss':<12} {'miner':<12} {'test EER':>9} {'test acc':>9} {'AUC':>7} {'val EER':>8} {'epochs':>6} {'train s':>8}")
    for entry in rows:
        miner = "all" if entry["miner"].startswith("none") else entry["miner"]
        print(f"{entry['loss']['name']:<12} {miner:<12} {entry['test_eer']:>9.2%} {entry['test_accuracy']:>9.2%} "
              f"{entry['test_auc']:>7.4f} {entry['validation_eer']:>8.2%} {entry['epochs']:>6} "
              f"{entry['training_seconds']:>8.0f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
