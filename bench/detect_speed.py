"""Detection + selection + alignment latency on a 250x250 LFW image and a 1280x960 photo.

    .venv/bin/python bench/detect_speed.py [--runs 50] [--detector mtcnn|yunet]

Prints median / p90 milliseconds per stage and writes bench/results/detect_speed.json for MTCNN,
the service's detector, or bench/results/detect_speed_<detector>.json for another. Uses two torch
threads, the service's setting on its 2-core host.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from model.faces.align import AlignmentTemplate, align_faces  # noqa: E402
from model.faces.mtcnn import MTCNN  # noqa: E402
from model.faces.select import select_face  # noqa: E402
from model.faces.yunet import YuNet  # noqa: E402
from model.images import load_image, to_array  # noqa: E402

DATA_DIR = Path(os.environ.get("FACEVER_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
LFW_IMAGE = DATA_DIR / "lfw" / "images" / "Michael_Kostelnik" / "Michael_Kostelnik_0001.jpg"
RESULTS = REPO_ROOT / "bench" / "results"
DETECTORS = {"mtcnn": MTCNN, "yunet": YuNet}
THREADS = 2
WARMUP = 5

# The dlib encoder's template: MTCNN's five points in dlib's 150x150 chip frame.
DLIB_CARD = REPO_ROOT / "weights" / "dlib-resnet-v1" / "model.json"


def photo_from(face: np.ndarray, width: int = 1280, height: int = 960) -> np.ndarray:
    """A width x height photo: the LFW image upscaled to the full width, centre rows kept."""
    upscaled = np.asarray(Image.fromarray(face).resize((width, width), Image.Resampling.BICUBIC))
    top = (width - height) // 2
    return np.ascontiguousarray(upscaled[top : top + height])


def time_case(
    detector: MTCNN | YuNet, template: AlignmentTemplate, images: list[np.ndarray], runs: int
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
    args = parser.parse_args(argv)

    torch.set_num_threads(THREADS)
    detector = DETECTORS[args.detector]()
    template = AlignmentTemplate.from_dict(json.loads(DLIB_CARD.read_text())["alignment"])
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

    name = "detect_speed" if args.detector == "mtcnn" else f"detect_speed_{args.detector}"
    out = RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "detector": args.detector,
        "runs": args.runs,
        "torch_threads": THREADS,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "template_size": template.size,
        "results": results,
    }, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
