"""Fit the face-quality model (model.faces.quality) on LFW View 1 and its degradations; never View 2.

Samples: every genuine pair of View 1 (pairsDevTrain and pairsDevTest), its second photo clean and
degraded once by each kind of model.evaluation.degrade (strength seeded by the pair), compared with
its clean first photo. A sample's label is whether that genuine comparison is accepted at the card's
far_1e-3 threshold, so the fitted score is the chance a genuine comparison of the face with a good
photo of the person is accepted. A logistic regression on the standardised features gives the
score; the levels are fixed probabilities. Each reason code's threshold is fitted on the clean
samples and those of the degradations it is about (blurry: blur and pixelated, dark: dark, ...):
from the worst value on, the first place where fewer than REASON_FAILURE_RATE of a window of
REASON_WINDOW neighbouring samples fail. Where even the worst window fails less (head pose, which
LFW hardly varies), a fixed default is kept and marked fitted: false.

    facever calibrate-quality --weights weights/fused-dlib-sface-yunet-int8
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from model.card import QualityModel, QualityReason, tta_mode, write_card
from model.distance import pair_distances
from model.errors import InputError
from model.evaluation.arguments import calibration_parser, command_line
from model.evaluation.calibrate import DEFAULT_OPERATING_POINT
from model.evaluation.degrade import KINDS, degrade
from model.evaluation.protocols import Pair, development_pairs
from model.faces.quality import QualityMeasures, features, measure
from model.faces.select import choose_face

VERSION = "1.0.0"
FEATURES = ["log_eye_distance", "abs_yaw", "abs_pitch", "detection_score", "log1p_sharpness",
            "brightness_offset", "clipped_fraction"]  # then one log norm per encoder member
LEVELS = {"high": 0.95, "medium": 0.7}
REASON_FAILURE_RATE = 0.25  # a reason applies where at least this share of genuine comparisons fail
REASON_WINDOW = 80
ALL = None  # fit on every kind of sample
# (code, measure, index, direction, absolute, the kinds of samples fitted on, fixed default)
REASON_RULES = [
    ("small_face", "eye_distance", None, "below", False, ("clean", "small"), 12.0),
    ("extreme_pose", "yaw", None, "above", True, ("clean",), 35.0),  # the nose two thirds of the way to an eye
    ("extreme_pose", "pitch", None, "above", True, ("clean",), 25.0),
    ("blurry", "sharpness", None, "below", False, ("clean", "blur", "pixelated"), 20.0),
    ("dark", "brightness", None, "below", False, ("clean", "dark"), 0.15),
    ("overexposed", "brightness", None, "above", False, ("clean", "bright"), 0.85),
    ("low_confidence", "detection_score", None, "below", False, ALL, 0.6),
    ("weak_identity", "embedding_norms", -1, "below", False, ALL, None),
]
BATCH = 16


def embed_and_measure(
    verifier, images: Sequence[Image.Image], stages: dict[str, float] | None = None
) -> list[tuple[np.ndarray, QualityMeasures] | None]:
    """Each image's central face embedded and measured (None where no face is found), in batches;
    LFW's photos are centred on their person, so the central face is the labelled one. `stages`,
    where given, sums the encoder's stage timings (ms) and counts the faces."""
    frontal = verifier.card.alignment[0].points
    results: list[tuple[np.ndarray, QualityMeasures] | None] = []
    for start in range(0, len(images), BATCH):
        arrays = [np.asarray(image.convert("RGB")) for image in images[start:start + BATCH]]
        chosen = []
        for array, faces in zip(arrays, verifier.detect(arrays)):
            try:
                chosen.append(choose_face(faces, "central", (array.shape[1], array.shape[0])).face)
            except InputError:
                chosen.append(None)
        views = [(array, face) for array, face in zip(arrays, chosen) if face is not None]
        embeddings, timings, signals = verifier.encode(views) if views else (np.zeros((0, 0)), {}, [])
        if stages is not None:
            for stage, ms in {**timings, "faces": len(views)}.items():
                stages[stage] = stages.get(stage, 0.0) + ms
        encoded = iter(zip(embeddings, signals))
        for face in chosen:
            if face is None:
                results.append(None)
            else:
                embedding, chip = next(encoded)
                results.append((embedding, measure(face, chip, frontal)))
    return results


def genuine_samples(verifier, images_dir: Path, pairs: Sequence[Pair], kinds: Sequence[str], seed: int):
    """For each genuine pair: the first photo clean, the second clean and degraded by each kind.
    Returns (first embeddings, {kind: [(embedding, measures) | None per pair]})."""
    genuine = [pair for pair in pairs if pair.same]
    firsts = embed_and_measure(verifier, [Image.open(images_dir / p.first).convert("RGB") for p in genuine])
    seconds = {}
    for kind_index, kind in enumerate(("clean", *kinds)):
        photos = []
        for index, pair in enumerate(genuine):
            photo = Image.open(images_dir / pair.second).convert("RGB")
            if kind != "clean":
                photo = degrade(photo, kind, np.random.default_rng([seed, kind_index, index]))
            photos.append(photo)
        seconds[kind] = embed_and_measure(verifier, photos)
        print(f"  {kind}: {sum(s is not None for s in seconds[kind])} of {len(photos)} faces found", file=sys.stderr)
    return firsts, seconds


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> tuple[np.ndarray, float]:
    """Weights and bias of p(y=1) = sigmoid(x w + b) by Newton's method, with a small L2 penalty."""
    design = np.hstack([x, np.ones((len(x), 1))])
    params = np.zeros(design.shape[1])
    penalty = l2 * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(design @ params, -50, 50)))
        gradient = design.T @ (p - y) / len(y) + penalty @ params
        hessian = design.T @ (design * (p * (1 - p))[:, None]) / len(y) + penalty + 1e-9 * np.eye(len(params))
        step = np.linalg.solve(hessian, gradient)
        params -= step
        if np.abs(step).max() < 1e-10:
            break
    return params[:-1], float(params[-1])


def reason_threshold(values: np.ndarray, failed: np.ndarray, direction: str) -> float | None:
    """From the worst value on, the value where a window of REASON_WINDOW neighbouring samples first
    fails less often than REASON_FAILURE_RATE; None where even the worst window does."""
    order = np.argsort(values if direction == "below" else -values, kind="stable")
    ranked_values, ranked_failed = values[order], failed[order].astype(float)
    if len(ranked_values) < REASON_WINDOW:
        return None
    windows = np.convolve(ranked_failed, np.ones(REASON_WINDOW) / REASON_WINDOW, mode="valid")
    below_rate = np.nonzero(windows < REASON_FAILURE_RATE)[0]
    first = below_rate[0] if below_rate.size else len(windows)
    if first == 0:
        return None
    return float(ranked_values[first + REASON_WINDOW // 2])


def _value(measures: QualityMeasures, name: str, index: int | None, absolute: bool) -> float:
    value = getattr(measures, name)
    value = value[index] if index is not None else value
    return abs(value) if absolute else value


def fit_quality(weights: Path, data_dir: Path, reports_dir: Path, command: str, threads: int = 2) -> dict:
    from model.verify.pipeline import FaceVerifier  # the networks load here, not on import

    verifier = FaceVerifier.from_folders(weights, threads=threads)
    threshold = verifier.calibration.operating_points[DEFAULT_OPERATING_POINT].threshold
    pairs, _, _ = development_pairs(data_dir)
    firsts, seconds = genuine_samples(verifier, data_dir / "lfw" / "images", pairs, KINDS, seed=1)
    rows, labels, kinds = [], [], []
    for kind, faces in seconds.items():
        for first, second in zip(firsts, faces):
            if first is None or second is None:
                continue
            distance = float(pair_distances(first[0][None], second[0][None])[0])
            rows.append(second[1])
            labels.append(distance <= threshold)
            kinds.append(kind)
    x = np.stack([features(m) for m in rows])
    y = np.array(labels, dtype=float)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    w, b = fit_logistic((x - mean) / scale, y)
    failed = ~np.array(labels)
    members = len(rows[0].embedding_norms or ())
    reasons: dict[str, list[dict]] = {}
    for code, name, index, direction, absolute, fit_kinds, default in REASON_RULES:
        chosen = [i for i, kind in enumerate(kinds) if fit_kinds is ALL or kind in fit_kinds]
        values = np.array([_value(rows[i], name, index if index is None else members + index, absolute)
                           for i in chosen])
        fitted = reason_threshold(values, failed[chosen], direction)
        if fitted is None and default is None:
            continue
        rule = {"measure": name, direction: fitted if fitted is not None else default, "absolute": absolute,
                "fitted": fitted is not None}
        if index is not None:
            rule["index"] = members + index
        reasons.setdefault(code, []).append(rule)
    model = QualityModel(
        version=VERSION, features=FEATURES + [f"log_norm_member_{i}" for i in range(members)],
        mean=mean.tolist(), scale=scale.tolist(), weights=w.tolist(), bias=b, levels=LEVELS,
        reasons={code: [QualityReason(**rule) for rule in rules] for code, rules in reasons.items()},
        fitted_on=(f"LFW View 1 genuine pairs ({len(firsts)}): the second photo clean and degraded by each of "
                   f"{', '.join(KINDS)}; {len(rows)} comparisons with a face found, labelled accepted or not at "
                   f"{DEFAULT_OPERATING_POINT} ({threshold:.4f})"),
        inference=tta_mode(verifier.flip_tta), command=command, date=dt.date.today().isoformat(),
    )
    write_card(verifier.card.updated(quality=model))
    scores = 1 / (1 + np.exp(-(((x - mean) / scale) @ w + b)))
    report = {
        "model": model.model_dump(mode="json"),
        "samples": {kind: {"comparisons": int(sum(k == kind for k in kinds)),
                           "accepted": float(np.mean([lab for lab, k in zip(labels, kinds) if k == kind])),
                           "median_score": float(np.median([s for s, k in zip(scores, kinds) if k == kind]))}
                    for kind in seconds},
    }
    out = reports_dir / verifier.card.name / "quality_fit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = calibration_parser("facever calibrate-quality", __doc__)
    args = parser.parse_args(argv)
    command = command_line("facever calibrate-quality", argv)
    report = fit_quality(args.weights, args.data, args.reports, command, args.threads)
    for kind, row in report["samples"].items():
        print(f"{kind:<10} {row['comparisons']:>5} comparisons, accepted {row['accepted']:.1%}, "
              f"median score {row['median_score']:.3f}")
    print(json.dumps(report["model"]["reasons"], indent=1))


if __name__ == "__main__":
    main()
