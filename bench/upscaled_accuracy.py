"""Whether photo-sized uploads cost accuracy: LFW pairs embedded as the service embeds an upload
(app.services.inference.embed_images: decoded as finely as detection needs, detected at its first
look, aligned from those pixels or its region decoded again) at LFW's own 250x250 and enlarged into
larger frames (model.evaluation.photo_mix.upscaled: the photo fills the frame's height, centred).

Scored at the card's default operating point (its threshold chosen on held-out identities) and at
the best threshold on the pairs themselves; the pairs are View 1's pairsDevTest (500, never View 2's)
unless --view2 asks for all of View 2 (6,000 pairs: an hour and more on 2 cores).

    python -m bench.upscaled_accuracy [--sizes 2048x1536 4032x3024] [--view2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from app.services.inference import FaceOptions, embed_images
from bench.machine import add_cap_argument, apply_cap, write_report
from bench.peer_speed import MAX_PIXELS, parse_size
from model.distance import pair_distances
from model.evaluation import metrics
from model.evaluation.photo_mix import upscaled
from model.evaluation.protocols import read_pairs
from model.engines.cpu import isa_suffix
from model.errors import InputError
from model.paths import DEFAULT_DATA_DIR, DEFAULT_ENCODER_DIR, REPORTS_DIR
from model.verify.pipeline import FaceVerifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_size, nargs="*", default=[(2048, 1536), (4032, 3024)])
    parser.add_argument("--view2", action="store_true")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    add_cap_argument(parser)
    args = parser.parse_args()
    apply_cap(args, "bench.upscaled_accuracy")
    lfw = args.data / "lfw"
    pairs = read_pairs(lfw / ("pairs.txt" if args.view2 else "pairsDevTest.txt"))
    paths = sorted({p.first for p in pairs} | {p.second for p in pairs})
    verifier = FaceVerifier.from_folders(DEFAULT_ENCODER_DIR, engine="openvino", threads=2)
    verifier.warm_up()
    threshold = verifier.decision().threshold
    same = np.array([p.same for p in pairs])
    results = {}
    for size in [None, *args.sizes]:
        name = "250x250" if size is None else f"{size[0]}x{size[1]}"
        embedded, refused = {}, 0
        for path in paths:
            data = (lfw / "images" / path).read_bytes() if size is None else upscaled(lfw / "images" / path, size)
            try:
                embedded[path] = embed_images(verifier, [data], FaceOptions(None, None), MAX_PIXELS)[0][0].embedding
            except InputError:
                refused += 1
        answered = [i for i, p in enumerate(pairs) if p.first in embedded and p.second in embedded]
        distances = pair_distances(np.stack([embedded[pairs[i].first] for i in answered]),
                                   np.stack([embedded[pairs[i].second] for i in answered]))
        labels = same[answered]
        results[name] = {
            "accuracy_at_default_threshold": round(metrics.accuracy(distances, labels, threshold), 5),
            "best_accuracy": round(metrics.accuracy(distances, labels,
                                                    metrics.best_accuracy_threshold(distances, labels)), 5),
            "pairs_answered": len(answered), "images_refused": refused,
        }
        print(f"{name:>9}: {results[name]}")
    write_report(REPORTS_DIR / f"upscaled_accuracy{'_view2' if args.view2 else ''}{isa_suffix()}.json", {
        "what": "LFW pairs embedded as uploads at 250x250 and enlarged into larger frames, in process",
        "pairs": "View 2 (pairs.txt)" if args.view2 else "View 1 pairsDevTest",
        "model": verifier.card.name, "engine": verifier.engine, "precision": verifier.precision,
        "default_threshold": round(threshold, 6), "results": results,
    }, threads=2)


if __name__ == "__main__":
    main()
