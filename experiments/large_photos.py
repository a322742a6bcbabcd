"""Whether a small face in a large JPEG should be aligned from finer pixels than detection decoded.

A large JPEG is decoded at the coarsest of libjpeg's reductions (1/2, 1/4, 1/8) that keeps what
detection looks at (model.images.decode_photo). A face that spans fewer pixels there than the
encoder's largest chip can be aligned from those pixels, upsampled, or from its own region decoded
again as finely as it needs (Photo.view). This study measures the difference on LFW View 1's
pairsDevTest (1,000 pairs; never View 2): each photo is pasted at its own resolution (its face about
110 pixels) into a 4000 x 3000 frame of noise at a seeded place, saved as JPEG (quality 90), and
embedded three ways:

- full: decoded at full size (what the service did before; 36 MB of pixels per photo);
- reduced: decoded at 1/4 for detection, aligned from those pixels (the face about 27 pixels);
- region: decoded at 1/4 for detection, the face aligned from its region decoded in full, with
  the landmarks detection found on the 1/4 pixels;
- refound: the same, with the face's landmarks found again on its region (the default).

Scored at the card's held-out best-accuracy threshold and at the best threshold on the pairs
themselves, with the faces not found, and the median decode time per photo.

    python -m experiments.large_photos
"""

from __future__ import annotations

import dataclasses
import io
import json
import time

import numpy as np
from PIL import Image

from experiments.common import parse, study_parser
from model.evaluation import metrics
from model.evaluation.protocols import read_pairs
from model.faces.select import choose_face
from model.images import Photo, decode_photo
from model.paths import DEFAULT_ENCODER_DIR, REPORTS_DIR
from model.verify.pipeline import FaceVerifier

FRAME = (4000, 3000)
WAYS = ("full", "reduced", "region", "refound")


def framed(path, rng: np.random.Generator, background: np.ndarray) -> bytes:
    """The photo at its own resolution in the frame, at a random place."""
    frame = Image.fromarray(background)
    photo = Image.open(path).convert("RGB")
    frame.paste(photo, (int(rng.integers(0, FRAME[0] - photo.width)), int(rng.integers(0, FRAME[1] - photo.height))))
    buffer = io.BytesIO()
    frame.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def embedded(verifier: FaceVerifier, photo: Photo, refind: bool) -> np.ndarray:
    """The chosen face's embedding, as the service computes it; without `refind`, aligned from the
    finer region with the landmarks found on the coarse pixels."""
    if refind:
        (face,), _ = verifier.embed([photo])
        return face.embedding
    faces = [photo.face_in_full(face) for face in verifier.detect([photo.pixels])[0]]
    pixels, local = photo.view(choose_face(faces, "subject", photo.size).face, verifier.align_side)
    return verifier.encode([(pixels, local)])[0][0]


def main() -> None:
    parser = study_parser(__doc__)
    parser.add_argument("--ways", nargs="*", choices=WAYS, default=list(WAYS))
    args = parse(parser)
    lfw = args.data / "lfw"
    pairs = read_pairs(lfw / "pairsDevTest.txt")
    paths = sorted({p.first for p in pairs} | {p.second for p in pairs})
    verifier = FaceVerifier.from_folders(DEFAULT_ENCODER_DIR, threads=args.threads)
    verifier.warm_up()
    rng = np.random.default_rng(0)
    background = rng.integers(90, 150, (FRAME[1], FRAME[0], 3), dtype=np.uint8)
    embeddings: dict[str, dict[str, np.ndarray | None]] = {way: {} for way in args.ways}
    decode_ms: dict[str, list[float]] = {way: [] for way in args.ways}
    started = time.perf_counter()
    for count, path in enumerate(paths):
        data = framed(lfw / "images" / path, rng, background)
        for way in args.ways:
            tick = time.perf_counter()
            photo = decode_photo(data, detection_side=None if way == "full" else verifier.detection_side)
            if way == "reduced":
                photo = dataclasses.replace(photo, jpeg=None)  # no finer pixels to align from
            decode_ms[way].append((time.perf_counter() - tick) * 1000)
            try:
                embeddings[way][path] = embedded(verifier, photo, refind=way != "region")
            except ValueError:  # no face found
                embeddings[way][path] = None
        if count % 200 == 0:
            print(f"{count}/{len(paths)} photos ({time.perf_counter() - started:.0f} s)", flush=True)

    threshold = verifier.calibration.operating_points["best_accuracy"].threshold
    is_same = np.array([p.same for p in pairs])
    results = {}
    for way in args.ways:
        found = embeddings[way]
        # A pair with a face not found counts as "not the same person".
        distances = np.array([np.linalg.norm(found[p.first] - found[p.second])
                              if found[p.first] is not None and found[p.second] is not None else 2.0 for p in pairs])
        results[way] = {
            "accuracy_at_held_out_threshold": round(metrics.accuracy(distances, is_same, threshold), 4),
            "best_accuracy": round(metrics.accuracy(distances, is_same, metrics.best_accuracy_threshold(distances, is_same)), 4),
            "faces_not_found": sum(value is None for value in found.values()),
            "median_decode_ms": round(float(np.median(decode_ms[way])), 1),
        }
        print(way, results[way])
    report = {
        "what": "LFW pairsDevTest photos at their own resolution in a 4000x3000 JPEG: full decode; 1/4 decode, "
                "aligned from it; 1/4 decode, aligned from the face's region decoded in full, with the coarse landmarks "
                "(region) or landmarks found again there (refound); decode_ms: the first decode only",
        "model": verifier.card.name,
        "held_out_threshold": threshold,
        "pairs": len(pairs),
        "results": results,
        "command": "python -m experiments.large_photos",
    }
    out = REPORTS_DIR / "large_photos_view1.json"
    if out.exists():  # a run of some ways keeps the others' results
        report["results"] = {**json.loads(out.read_text())["results"], **results}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
