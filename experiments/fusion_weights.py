"""Choose a fused encoder's member weights on LFW View 1 (development pairs), never View 2.

Each member embeds the View 1 images once (cached); the fusion is then computed for each weight of
the second member relative to the first, plain and with flip TTA, exactly as FusedEncoder does it
(weighted concatenation of L2-normalised member embeddings).

    python -m experiments.fusion_weights --members weights/dlib-resnet-v1 weights/sface-2021dec
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from experiments.common import parse, study_parser
from model.card import tta_mode
from model.evaluation.embeddings import embed_dataset
from model.evaluation.protocols import development_pairs, protocol_distances, score_development
from model.paths import REPORTS_DIR
from model.verify.pipeline import FaceVerifier

SECOND_MEMBER_WEIGHTS = (0.0, 0.25, 0.35, 0.5, 0.6, 0.75, 1.0, 1.5, 2.0, 100.0)  # 0 and 100: each member alone


def main() -> None:
    parser = study_parser(__doc__)
    parser.add_argument("--members", type=Path, nargs=2, required=True)
    args = parse(parser)

    lfw = args.data / "lfw"
    pairs, paths, is_same = development_pairs(args.data)
    members = [embed_dataset(FaceVerifier.from_folders(folder), lfw / "images", paths) for folder in args.members]
    index = members[0].index()

    results = {}
    for flip_tta in (False, True):
        for weight in SECOND_MEMBER_WEIGHTS:
            views = []
            for mirrored in (False, True) if flip_tta else (False,):
                parts = []
                for member, w in zip(members, (1.0, weight)):
                    raw = member.raw_mirrored if mirrored else member.raw
                    parts.append(w * raw / np.linalg.norm(raw, axis=1, keepdims=True))
                views.append(np.concatenate(parts, axis=1))
            fused = np.mean(views, axis=0)
            fused /= np.linalg.norm(fused, axis=1, keepdims=True)
            d = protocol_distances(fused, index, pairs)
            results[f"w={weight:g} / {tta_mode(flip_tta)}"] = {
                "second_member_weight": weight,
                "flip_tta": flip_tta,
                **score_development(d, is_same),
            }
    print(f"members: {[str(m) for m in args.members]}; LFW View 1, {len(pairs)} pairs")
    print(f"{'second weight / mode':<22} {'accuracy':>8} {'EER':>7} {'AUC':>8} {'TAR@1e-3':>9}")
    for name, r in results.items():
        print(f"{name:<22} {r['accuracy']:>8.2%} {r['eer']:>7.2%} {r['auc']:>8.5f} {r['tar_at_far_1e-3']:>9.2%}")
    out = REPORTS_DIR / "fusion_weights_view1.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"members": [str(m) for m in args.members], "protocol": "LFW View 1", "results": results}, indent=2)
        + "\n"
    )


if __name__ == "__main__":
    main()
