"""How often a detector finds a face in LFW: every image of ../shared/data/lfw/images (or
$FACEVER_DATA_DIR/lfw/images), or every n-th, default detector settings, largest face kept.

    python -m bench.detection_rate [--detector mtcnn|yunet] [--every N]

Prints and writes bench/results/detection_rate.json for MTCNN over all images, otherwise
bench/results/detection_rate_<detector>[_every<N>].json (count, found, rate, seconds, the images
with no face). Uses two torch threads, all the cores of the 2-core host.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bench.machine import write_report
from model.engines.cpu import isa_line
from model.faces.detectors import DETECTORS, build_detector
from model.faces.select import select_face
from model.images import load_image, to_array
from model.paths import DEFAULT_DATA_DIR, REPORTS_DIR

THREADS = 2
BATCH = 8  # images per detect() call, as the service batches a request's images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_DATA_DIR / "lfw" / "images")
    parser.add_argument("--detector", choices=DETECTORS, default="mtcnn")
    parser.add_argument("--every", type=int, default=1, help="take every n-th image (sorted)")
    args = parser.parse_args(argv)

    torch.set_num_threads(THREADS)
    print(isa_line())
    detector = build_detector(args.detector)
    paths = sorted(args.images.glob("*/*.jpg"))[:: args.every]
    if not paths:
        raise SystemExit(f"no images under {args.images}")
    missed, kept_scores, several = [], [], 0
    start = time.perf_counter()
    for first in range(0, len(paths), BATCH):
        batch = paths[first : first + BATCH]
        images = [to_array(load_image(path)) for path in batch]
        for path, image, faces in zip(batch, images, detector.detect(images)):
            if not faces:
                missed.append(path.relative_to(args.images).as_posix())
                continue
            kept = select_face(faces, "largest", (image.shape[1], image.shape[0]))
            kept_scores.append(kept.score)
            several += len(faces) > 1
    seconds = time.perf_counter() - start

    found = len(paths) - len(missed)
    result = {
        "count": len(paths),
        "found": found,
        "rate": found / len(paths),
        "seconds": round(seconds, 1),
        "ms_per_image": round(1000 * seconds / len(paths), 2),
        "with_several_faces": several,
        "kept_face_score_median": statistics.median(kept_scores),
        "torch_threads": THREADS,
        "detector": args.detector,
        "every": args.every,
        "settings": {**detector.settings, "selection": "largest"},
        "missed": missed,
    }
    print(
        f"{found}/{len(paths)} images with a face ({100 * result['rate']:.2f}%), "
        f"{several} with several; {seconds:.0f} s ({result['ms_per_image']} ms/image)"
    )
    name = "detection_rate" if args.detector == "mtcnn" else f"detection_rate_{args.detector}"
    out = REPORTS_DIR / (f"{name}.json" if args.every == 1 else f"{name}_every{args.every}.json")
    write_report(out, result, threads=THREADS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
