"""Detection + selection + alignment latency on a 250x250 LFW image and a 1280x960 photo.

    python -m bench.detect_speed [--runs 50] [--detector mtcnn|yunet] [--engine torch|openvino]

Prints median / p90 milliseconds per stage and writes bench/results/detect_speed.json for MTCNN on
torch, or bench/results/detect_speed[_<detector>][_<engine>].json otherwise: the detector unless it
is MTCNN, the engine unless it is torch (the default encoder's card names yunet+mtcnn: YuNet, with
MTCNN only where YuNet finds no face). Uses two threads, all the cores of the 2-core host.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from PIL import Image

from bench.machine import write_report
from model.card import load_card
from model.engines.cpu import isa_line
from model.faces.align import align_faces
from model.faces.detectors import DETECTORS, Detector, build_detector
from model.faces.select import select_face
from model.images import load_image, to_array
from model.paths import DEFAULT_DATA_DIR, REPORTS_DIR, WEIGHTS_DIR
from model.types import ENGINE_NAMES, AlignmentTemplate

LFW_IMAGE = DEFAULT_DATA_DIR / "lfw" / "images" / "Michael_Kostelnik" / "Michael_Kostelnik_0001.jpg"
THREADS = 2
WARMUP = 5

# The dlib encoder's template: a 150x150 chip.
TEMPLATE_CARD = WEIGHTS_DIR / "dlib-resnet-v1"


def photo_from(face: np.ndarray, width: int = 1280, height: int = 960) -> np.ndarray:
    """A width x height photo: the LFW image upscaled to the full width, centre rows kept."""
    upscaled = np.asarray(Image.fromarray(face).resize((width, width), Image.Resampling.BICUBIC))
    top = (width - height) // 2
    return np.ascontiguousarray(upscaled[top : top + height])


def time_case(
    detector: Detector, template: AlignmentTemplate, images: list[np.ndarray], runs: int
) -> dict:
    """Median / p90 ms of detect (all images in one call) and of select + align, over `runs`."""

    def once() -> tuple[float, float]:
        start = time.perf_counter()
        detections = detector.detect(images)
        detected = time.perf_counter()
        for image, faces in zip(images, detections):
            chosen = select_face(faces, "largest", (image.shape[1], image.shape[0]))
            align_faces(image, [chosen], template)
        return (detected - start) * 1000, (time.perf_counter() - detected) * 1000

    for _ in range(WARMUP):
        once()
    detect_ms, align_ms = zip(*(once() for _ in range(runs)))
    stages = {
        "detect": detect_ms,
        "select_align": align_ms,
        "total": [d + a for d, a in zip(detect_ms, align_ms)],
    }
    return {
        stage: {"median_ms": statistics.median(values), "p90_ms": float(np.percentile(values, 90))}
        for stage, values in stages.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--detector", choices=DETECTORS, default="mtcnn")
    parser.add_argument("--engine", choices=ENGINE_NAMES, default="torch", help="what runs the detector's networks")
    args = parser.parse_args(argv)

    if args.engine == "torch":
        import torch

        torch.set_num_threads(THREADS)
    print(isa_line())
    print(f"detector {args.detector}, engine {args.engine}, float32")
    detector = build_detector(args.detector, engine=args.engine, threads=THREADS)
    template = load_card(TEMPLATE_CARD).template
    face = to_array(load_image(LFW_IMAGE))
    photo = photo_from(face)
    cases = {
        "lfw_250x250": [face],
        "photo_1280x960": [photo],
        "verify_pair_250_and_1280x960": [face, photo],
    }
    results = {
        name: time_case(detector, template, images, args.runs) for name, images in cases.items()
    }

    print(f"{'case':32} {'stage':13} {'median ms':>10} {'p90 ms':>8}")
    for name, stages in results.items():
        for stage, numbers in stages.items():
            print(f"{name:32} {stage:13} {numbers['median_ms']:10.1f} {numbers['p90_ms']:8.1f}")

    name = "detect_speed" + ("" if args.detector == "mtcnn" else f"_{args.detector}") + (
        "" if args.engine == "torch" else f"_{args.engine}")
    write_report(REPORTS_DIR / f"{name}.json", {
        "detector": detector.settings,
        "engine": args.engine,
        "precision": "float32",
        "runs": args.runs,
        "template_size": template.size,
        "results": results,
    }, threads=THREADS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
