"""Grouping's threshold, chosen on LFW View 1 only: the images of pairsDevTrain and pairsDevTest
(4,992 faces of 4,281 people; never View 2's), each face chosen by the service's default policy.

The rule's threshold is the one of a grid with the best mean of pairwise and BCubed F on those
images; beside it, the share of their impostor pairs closer than it (one look-alike link). Written
into the card per inference mode (EncoderCard.grouping), which POST /group and `facever group` use;
bench/grouping.py measures it, and the baselines chosen the same way, on all 13,233 faces.

    facever calibrate-grouping --weights weights/fused-dlib-sface-yunet-int8
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from model.card import GroupingCalibration, tta_mode, write_card
from model.evaluation.arguments import calibration_parser, command_line
from model.evaluation.embeddings import DatasetEmbeddings, embed_dataset
from model.evaluation.protocols import identity_images, read_pairs
from model.verify.grouping import RULES, close_pairs, scores

RULE = "average_linkage"
GRID = np.round(np.arange(0.20, 1.40, 0.02), 2)
DROP = 0.1
POLICY = "subject"  # the service's default face policy (app.settings.Settings.face_policy)
PROTOCOL = ("the threshold of a 0.02 grid with the best mean of pairwise and BCubed F on the images of LFW View 1's "
            "pair lists (pairsDevTrain, pairsDevTest), each face chosen by the 'subject' policy")


def person(path: str) -> str:
    return path.split("/")[0]


def embed_all_lfw(verifier, data_dir: Path) -> DatasetEmbeddings:
    """All 13,233 LFW images under the default face policy: one cached pass for the calibration and
    the grouping bench."""
    images = data_dir / "lfw" / "images"
    paths = [path for found in identity_images(images).values() for path in found]
    return embed_dataset(verifier, images, paths, policy=POLICY)


def view1_rows(embedded: DatasetEmbeddings, data_dir: Path) -> np.ndarray:
    """The rows of View 1's images (both pair lists)."""
    lfw = data_dir / "lfw"
    pairs = read_pairs(lfw / "pairsDevTrain.txt") + read_pairs(lfw / "pairsDevTest.txt")
    index = embedded.index()
    return np.array(sorted(index[path] for path in {p for pair in pairs for p in (pair.first, pair.second)}))


def choose(rule: str, embeddings: np.ndarray, truth: np.ndarray) -> tuple[float, dict]:
    """The grid's threshold with the best mean of pairwise and BCubed F for `rule` on these faces,
    and its scores there. The grid is walked upwards until the merit falls DROP below the best: past
    that every threshold only merges more people (and their graphs grow towards N^2 pairs)."""
    best = None
    for threshold in GRID:
        result = scores(RULES[rule](embeddings, float(threshold)), truth)
        merit = (result["pairwise_f"] + result["bcubed_f"]) / 2
        if best is None or merit > best[0]:
            best = (merit, float(threshold), result)
        elif merit < best[0] - DROP:
            break
    return best[1], best[2]


def link_far(embeddings: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    """The share of impostor pairs closer than `threshold`."""
    firsts, seconds, _ = close_pairs(embeddings, threshold)
    linked = int((truth[firsts] != truth[seconds]).sum())
    sizes = np.bincount(truth)
    impostor_pairs = len(truth) * (len(truth) - 1) // 2 - int((sizes * (sizes - 1) // 2).sum())
    return linked / impostor_pairs


def calibrate_grouping(weights: Path, data_dir: Path, reports_dir: Path, command: str, threads: int = 2) -> dict:
    from model.verify.pipeline import FaceVerifier  # the networks load here, not on import

    verifier = FaceVerifier.from_folders(weights, threads=threads)
    embedded = embed_all_lfw(verifier, data_dir)
    rows = view1_rows(embedded, data_dir)
    truth = np.unique([person(path) for path in embedded.paths], return_inverse=True)[1][rows]
    modes = {}
    for flip_tta in (False, True):
        embeddings = embedded.normalised(flip_tta=flip_tta)[rows]
        threshold, result = choose(RULE, embeddings, truth)
        modes[tta_mode(flip_tta)] = GroupingCalibration(
            rule=RULE, threshold=threshold, link_far=link_far(embeddings, truth, threshold),
            view1={key: round(value, 6) if isinstance(value, float) else value for key, value in result.items()},
            protocol=PROTOCOL, command=command,
            date=dt.date.today().isoformat())
    card = write_card(verifier.card.updated(grouping=modes))
    out = reports_dir / card.name / "grouping_calibration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({mode: m.model_dump(mode="json") for mode, m in modes.items()}, indent=2) + "\n")
    return modes


def main(argv: list[str] | None = None) -> None:
    parser = calibration_parser("facever calibrate-grouping", __doc__)
    args = parser.parse_args(argv)
    modes = calibrate_grouping(args.weights, args.data, args.reports, command_line("facever calibrate-grouping", argv),
                               args.threads)
    for mode, calibration in modes.items():
        print(f"{mode}: {calibration.rule} at {calibration.threshold:.2f} (link FAR {calibration.link_far:.2e}); "
              f"on View 1: pairwise F {calibration.view1['pairwise_f']:.4f}, BCubed F {calibration.view1['bcubed_f']:.4f}")


if __name__ == "__main__":
    main()
