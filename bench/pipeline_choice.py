"""Choose detector and precision on LFW View 1 (development pairs), never View 2.

Each weights folder (its card names the detector its templates suit) is embedded in each precision
through our own pipeline, and scored on pairsDevTrain + pairsDevTest (3,200 pairs), plain and with
flip TTA: best balanced accuracy, EER, AUC, TAR at FAR 1e-3.

    python bench/pipeline_choice.py --weights weights/fused-dlib-sface weights/fused-dlib-sface-yunet \
        --precisions float32 bfloat16
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from model.card import tta_mode
from model.evaluation.embeddings import embed_dataset
from model.encoders.precision import PRECISIONS
from model.evaluation.evaluate import DEFAULT_REPORTS, development_pairs, pair_distances, score_development
from model.evaluation.protocols import DEFAULT_DATA_DIR
from model.verify.pipeline import FaceVerifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, nargs="+", required=True)
    parser.add_argument("--precisions", nargs="+", choices=sorted(PRECISIONS), default=["float32"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lfw = args.data / "lfw"
    pairs, paths, is_same = development_pairs(args.data)

    results = {}
    for folder in args.weights:
        for precision in args.precisions:
            verifier = FaceVerifier.from_folders(folder, precision=precision)
            embeddings = embed_dataset(verifier, lfw / "images", paths)
            for flip_tta in (False, True):
                d = pair_distances(embeddings.normalised(flip_tta), embeddings.index(), pairs)
                results[f"{verifier.card.name} / {verifier.card.detector} / {verifier.precision} / {tta_mode(flip_tta)}"] = {
                    "weights": str(folder),
                    "detector": verifier.card.detector,
                    "precision": verifier.precision,
                    "flip_tta": flip_tta,
                    "images_without_detected_face": int((~embeddings.detected).sum()),
                    **score_development(d, is_same),
                }
    print(f"LFW View 1, {len(pairs)} pairs")
    print(f"{'weights / detector / precision / mode':<58} {'accuracy':>8} {'EER':>7} {'AUC':>8} {'TAR@1e-3':>9}")
    for name, r in results.items():
        print(f"{name:<58} {r['accuracy']:>8.2%} {r['eer']:>7.2%} {r['auc']:>8.5f} {r['tar_at_far_1e-3']:>9.2%}")
    out = DEFAULT_REPORTS / "pipeline_choice_view1.json"
    out.write_text(json.dumps({"protocol": "LFW View 1 (pairsDevTrain + pairsDevTest)", "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
