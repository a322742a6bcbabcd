"""Choose detector and precision on LFW View 1 (development pairs), never View 2.

Each weights folder (its card names the detector its templates suit) is embedded in each precision
through our own pipeline, and scored on pairsDevTrain + pairsDevTest (3,200 pairs), plain and with
flip TTA: best balanced accuracy, EER, AUC, TAR at FAR 1e-3.

    python -m experiments.pipeline_choice --weights weights/fused-dlib-sface weights/fused-dlib-sface-yunet \
        --precisions float32 bfloat16
    python -m experiments.pipeline_choice --weights weights/fused-dlib-sface-yunet weights/fused-dlib-sface-yunet-int8 \
        --out bench/results/numerics_choice_view1.json   # each card in its own numerics
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.common import parse, study_parser
from model.card import tta_mode
from model.evaluation.embeddings import embed_dataset
from model.evaluation.protocols import development_pairs, protocol_distances, score_development
from model.paths import REPORTS_DIR
from model.types import PRECISION_NAMES
from model.verify.pipeline import FaceVerifier


def main() -> None:
    parser = study_parser(__doc__)
    parser.add_argument("--weights", type=Path, nargs="+", required=True)
    parser.add_argument("--precisions", nargs="+", choices=PRECISION_NAMES,
                        help="each folder in each of these; default: each card's own (and its engine)")
    parser.add_argument("--out", type=Path, default=REPORTS_DIR / "pipeline_choice_view1.json")
    args = parse(parser)

    lfw = args.data / "lfw"
    pairs, paths, is_same = development_pairs(args.data)

    results = {}
    for folder in args.weights:
        for precision in args.precisions or [None]:
            verifier = FaceVerifier.from_folders(folder, precision=precision)
            embeddings = embed_dataset(verifier, lfw / "images", paths)
            for flip_tta in (False, True):
                d = protocol_distances(embeddings.normalised(flip_tta), embeddings.index(), pairs)
                name = f"{verifier.card.name} / {verifier.card.detector} / {verifier.engine} {verifier.precision}"
                results[f"{name} / {tta_mode(flip_tta)}"] = {
                    "weights": str(folder),
                    "detector": verifier.card.detector,
                    "engine": verifier.engine,
                    "precision": verifier.precision,
                    "flip_tta": flip_tta,
                    "images_without_detected_face": int((~embeddings.detected).sum()),
                    **score_development(d, is_same),
                }
    print(f"LFW View 1, {len(pairs)} pairs")
    print(f"{'weights / detector / numerics / mode':<72} {'accuracy':>8} {'EER':>7} {'AUC':>8} {'TAR@1e-3':>9}")
    for name, r in results.items():
        print(f"{name:<72} {r['accuracy']:>8.2%} {r['eer']:>7.2%} {r['auc']:>8.5f} {r['tar_at_far_1e-3']:>9.2%}")
    args.out.write_text(json.dumps({"protocol": "LFW View 1 (pairsDevTrain + pairsDevTest)", "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
