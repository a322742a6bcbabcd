"""Choose the default face choice on LFW View 1 and on synthetic composites, never on View 2.

Every face the detector finds in each View 1 image (pairsDevTrain + pairsDevTest) is embedded once;
each candidate rule then picks one per image, and the 3,200 pairs are scored at the best-accuracy
threshold. Composites built from pairsDevTrain images test what LFW's centred photos rarely show:

- bystander: the subject's photo with a second person's face, 1.3 times larger, pasted near the
  left or right edge (a news photo with someone closer to the camera);
- card: the subject enlarged as in a selfie, with a second face at a third of the size held up
  below it (an ID card);
- off-centre: the subject at a quarter of the frame's width, a passer-by at half the size in the
  middle (a selfie taken off-centre);
- pair: two people side by side at the same size (no right answer: the choice should be flagged
  ambiguous).

A rule is `score = log(area) - centre_weight * (d / h)^2 + confidence_weight * log(detection score)`,
d the distance of the face's centre from the image's, h half the image's diagonal; `largest` and
`central` (area - 2 d^2) are scored beside them.

    python -m experiments.face_choice [--composites 200]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from experiments.common import parse, study_parser
from model.evaluation import metrics
from model.evaluation.protocols import development_pairs, read_pairs
from model.faces.select import SubjectPolicyWeights, rank_faces
from model.images import load_image, to_array
from model.paths import DEFAULT_ENCODER_DIR, REPORTS_DIR
from model.types import Face
from model.verify.pipeline import FaceVerifier, l2_normalise

MAX_FACES = 5  # per image, best detection scores first
CENTRE_WEIGHTS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
CONFIDENCE_WEIGHTS = (0.0, 1.0, 4.0)
AMBIGUITY_MARGINS = (0.2, 0.4, 0.7)  # in the score's log units


def detect_and_embed(verifier: FaceVerifier, images: list[np.ndarray]) -> list[list[tuple[Face, np.ndarray]]]:
    """Every face (at most MAX_FACES) of each image with its plain embedding."""
    found = []
    for start in range(0, len(images), 16):
        batch = images[start : start + 16]
        for array, faces in zip(batch, verifier.detector.detect(batch)):
            faces = faces[:MAX_FACES]
            if not faces:
                found.append([])
                continue
            chips = verifier.align([array] * len(faces), faces)
            embeddings = l2_normalise(verifier.encode_chips(chips, flip_tta=False))
            found.append(list(zip(faces, embeddings)))
    return found


def rules() -> dict[str, str | SubjectPolicyWeights]:
    candidates: dict[str, str | SubjectPolicyWeights] = {"largest": "largest", "central": "central"}
    for centre in CENTRE_WEIGHTS:
        for confidence in CONFIDENCE_WEIGHTS:
            candidates[f"subject c={centre:g} s={confidence:g}"] = SubjectPolicyWeights(centre, confidence)
    return candidates


def choose(faces: list[tuple[Face, np.ndarray]], rule: str | SubjectPolicyWeights, size: tuple[int, int]) -> int | None:
    if not faces:
        return None
    ranked = rank_faces([face for face, _ in faces], rule, size)
    return [face for face, _ in faces].index(ranked[0][0])


def paste(canvas: Image.Image, source: np.ndarray, face: Face, scale: float, centre: tuple[float, float]) -> tuple:
    """Paste the square around `face` of `source`, scaled, centred at `centre`; its face box in the canvas."""
    x1, y1, x2, y2 = face.box
    side = int(1.6 * max(x2 - x1, y2 - y1))
    left_in_source, top_in_source = int((x1 + x2 - side) / 2), int((y1 + y2 - side) / 2)
    crop = Image.fromarray(source).crop((left_in_source, top_in_source, left_in_source + side, top_in_source + side))
    size = max(1, round(side * scale))
    factor = size / side
    left, top = int(centre[0] - size / 2), int(centre[1] - size / 2)
    canvas.paste(crop.resize((size, size), Image.Resampling.BICUBIC), (left, top))
    return (left + (x1 - left_in_source) * factor, top + (y1 - top_in_source) * factor,
            left + (x2 - left_in_source) * factor, top + (y2 - top_in_source) * factor)


def composites(images: list[np.ndarray], faces: list[Face], count: int, seed: int = 0):
    """(kind, image, the subject's box or None) for `count` composites of each kind."""
    rng = np.random.default_rng(seed)
    built = []
    for _ in range(count):
        a, b = rng.choice(len(images), 2, replace=False)
        # bystander: the subject's 250x250 photo centred on a 500x300 news frame, a larger face at an edge
        canvas = Image.new("RGB", (500, 300), (90, 90, 90))
        canvas.paste(Image.fromarray(images[a]), (125, 25))
        subject = tuple(v + offset for v, offset in zip(faces[a].box, (125, 25, 125, 25)))
        edge_x = 45 if rng.random() < 0.5 else 455
        paste(canvas, images[b], faces[b], 1.3, (edge_x, rng.uniform(100, 200)))
        built.append(("bystander", np.asarray(canvas), subject))
        # card: the subject twice as large, a face at a third of the subject's size below it
        canvas = Image.new("RGB", (400, 500), (200, 190, 180))
        subject = paste(canvas, images[a], faces[a], 2.0, (200, 180))
        paste(canvas, images[b], faces[b], 2.0 / 3, (rng.uniform(170, 230), 400))
        built.append(("card", np.asarray(canvas), subject))
        # off-centre: the subject at a quarter of the width, a passer-by half its size in the middle
        canvas = Image.new("RGB", (600, 400), (150, 160, 170))
        subject = paste(canvas, images[a], faces[a], 1.5, (150, rng.uniform(150, 250)))
        paste(canvas, images[b], faces[b], 0.75, (300, rng.uniform(180, 220)))
        built.append(("off-centre", np.asarray(canvas), subject))
        # pair: two people side by side at the same size
        canvas = Image.new("RGB", (500, 300), (120, 120, 120))
        paste(canvas, images[a], faces[a], 1.0, (165, 150))
        paste(canvas, images[b], faces[b], 1.0, (335, 150))
        built.append(("pair", np.asarray(canvas), None))
    return built


def iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def main() -> None:
    parser = study_parser(__doc__)
    parser.add_argument("--weights", type=Path, default=DEFAULT_ENCODER_DIR)
    parser.add_argument("--composites", type=int, default=200, help="of each kind")
    parser.add_argument("--out", type=Path, default=REPORTS_DIR / "face_choice_view1.json")
    args = parse(parser)

    verifier = FaceVerifier.from_folders(args.weights)
    images_dir = args.data / "lfw" / "images"
    pairs, paths, is_same = development_pairs(args.data)
    arrays = [to_array(load_image(images_dir / path)) for path in paths]
    found = detect_and_embed(verifier, arrays)
    index = {path: i for i, path in enumerate(paths)}

    train = sorted({p for pair in read_pairs(args.data / "lfw" / "pairsDevTrain.txt") for p in (pair.first, pair.second)})
    sources = [(arrays[index[p]], found[index[p]]) for p in train]
    sources = [(array, faces[0][0]) for array, faces in sources if len(faces) == 1]  # one clear face
    built = composites([a for a, _ in sources], [f for _, f in sources], args.composites)
    built_found = detect_and_embed(verifier, [image for _, image, _ in built])

    results = {}
    for name, rule in rules().items():
        chosen = [choose(faces, rule, (array.shape[1], array.shape[0])) for faces, array in zip(found, arrays)]
        embeddings = np.stack([faces[c][1] if c is not None else np.zeros(verifier.card.embedding_dim)
                               for faces, c in zip(found, chosen)])
        first = embeddings[[index[p.first] for p in pairs]]
        second = embeddings[[index[p.second] for p in pairs]]
        distances = np.linalg.norm(first - second, axis=1)
        threshold = metrics.best_accuracy_threshold(distances, is_same)
        row = {"view1_accuracy": metrics.accuracy(distances, is_same, threshold),
               "view1_tar_at_far_1e-3": metrics.tar_at_far(distances, is_same, 1e-3)[0]}
        for kind in ("bystander", "card", "off-centre"):
            hits = [iou(faces[choose(faces, rule, image.shape[1::-1])][0].box, truth) > 0.5
                    for (k, image, truth), faces in zip(built, built_found) if k == kind and faces]
            row[f"{kind}_correct"] = float(np.mean(hits))
        if isinstance(rule, SubjectPolicyWeights):
            for margin in AMBIGUITY_MARGINS:
                flagged = {}
                for kind in ("bystander", "card", "off-centre", "pair"):
                    ranks = [rank_faces([f for f, _ in faces], rule, image.shape[1::-1])
                             for (k, image, _), faces in zip(built, built_found) if k == kind and faces]
                    flagged[kind] = float(np.mean([len(r) > 1 and r[0][1] - r[1][1] < margin for r in ranks]))
                several = [rank_faces([f for f, _ in faces], rule, array.shape[1::-1]) for faces, array in zip(found, arrays)
                           if len(faces) > 1]
                flagged["view1_images_with_several_faces"] = float(np.mean([r[0][1] - r[1][1] < margin for r in several]))
                row[f"ambiguous_at_margin_{margin:g}"] = flagged
        results[name] = row

    print(f"LFW View 1: {len(pairs)} pairs, {sum(len(f) > 1 for f in found)} of {len(paths)} images with several faces; "
          f"{args.composites} composites of each kind")
    print(f"{'rule':<24} {'View 1 acc':>10} {'TAR@1e-3':>9} {'bystander':>10} {'card':>6} {'off-centre':>10}")
    for name, row in results.items():
        print(f"{name:<24} {row['view1_accuracy']:>10.2%} {row['view1_tar_at_far_1e-3']:>9.2%} "
              f"{row['bystander_correct']:>10.1%} {row['card_correct']:>6.1%} {row['off-centre_correct']:>10.1%}")
    args.out.write_text(json.dumps({
        "protocol": "LFW View 1 (pairsDevTrain + pairsDevTest), best-accuracy threshold on the pairs themselves; "
                    "composites from pairsDevTrain images with one detected face",
        "model": verifier.card.name, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
