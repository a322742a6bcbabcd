"""Choose the alignment template's landmark weights on LFW View 1 (development pairs), never View 2.

Each variant re-aligns the same cached detections and is scored on pairsDevTrain + pairsDevTest
(3,200 pairs): best balanced accuracy, EER, AUC and TAR at FAR 1e-3, plain and with flip TTA.

    python -m experiments.alignment_templates [--weights weights/dlib-resnet-v1]
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.common import parse, study_parser
from model.card import tta_mode
from model.evaluation.embeddings import embed_dataset
from model.evaluation.protocols import development_pairs, protocol_distances, score_development
from model.paths import REPORTS_DIR, WEIGHTS_DIR
from model.verify.pipeline import FaceVerifier

WEIGHTINGS = {
    "all points equal": (1.0, 1.0, 1.0, 1.0, 1.0),
    "eyes double, nose, no mouth": (2.0, 2.0, 1.0, 0.0, 0.0),
    "eyes double, nose and mouth single": (2.0, 2.0, 1.0, 1.0, 1.0),
}


def main() -> None:
    parser = study_parser(__doc__)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR / "dlib-resnet-v1")
    args = parse(parser)

    lfw = args.data / "lfw"
    pairs, paths, is_same = development_pairs(args.data)
    verifier = FaceVerifier.from_folders(args.weights)
    results = {}
    for name, weights in WEIGHTINGS.items():
        first, *others = verifier.templates  # the first template is varied; a fused card's others stay
        verifier.templates = (first.model_copy(update={"weights": weights}), *others)
        embeddings = embed_dataset(verifier, lfw / "images", paths)
        for flip_tta in (False, True):
            d = protocol_distances(embeddings.normalised(flip_tta), embeddings.index(), pairs)
            results[f"{name} / {tta_mode(flip_tta)}"] = {"weights": weights, **score_development(d, is_same)}
    print(f"{'template weights / mode':<44} {'accuracy':>8} {'EER':>7} {'AUC':>8} {'TAR@1e-3':>9}")
    for name, r in results.items():
        print(f"{name:<44} {r['accuracy']:>8.2%} {r['eer']:>7.2%} {r['auc']:>8.5f} {r['tar_at_far_1e-3']:>9.2%}")
    out = REPORTS_DIR / verifier.card.name / "template_selection_view1.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"protocol": "LFW View 1, 3,200 pairs", "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
