"""Embeddings of every image of a dataset through our own pipeline, cached on disk.

Evaluation and calibration both need them, in both inference modes, so each image is detected,
aligned and encoded once, plain and mirrored; the flip-TTA embedding is derived from the two. The
cache key covers the weights, the templates, the detector settings, the engine and precision and the
CPU's ISA (and any cap on it), so a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.encoders.flip import flip_mean
from model.engines.cpu import describe_cpu
from model.errors import NoFaceDetected
from model.evaluation.protocols import identity_images
from model.faces.align import ALIGNMENT_VERSION
from model.faces.detectors import Detector
from model.faces.select import select_face
from model.files import write_atomic
from model.images import load_image, to_array
from model.paths import CACHE_DIR
from model.types import Face
from model.verify.pipeline import FaceVerifier

DEFAULT_CACHE_DIR = CACHE_DIR / "embeddings"


@dataclass(frozen=True)
class DatasetEmbeddings:
    paths: list[str]
    raw: np.ndarray  # (N, D) encoder output of each chip
    raw_mirrored: np.ndarray  # (N, D) encoder output of each mirrored chip
    detected: np.ndarray  # (N,) False where no face was found and the fallback box was used

    def normalised(self, flip_tta: bool) -> np.ndarray:
        embeddings = flip_mean(self.raw, self.raw_mirrored) if flip_tta else self.raw
        return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)

    def index(self) -> dict[str, int]:
        return {path: i for i, path in enumerate(self.paths)}


def _digest(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
    return digest.hexdigest()[:16]


def _fallback_face(faces: list[Face | None], sizes: list[tuple[int, int]]) -> Face:
    """Where detection fails, the mean landmark layout of the dataset's detected faces (relative to
    image size), so every protocol pair is still scored; the count of such images is reported."""
    found = [(face, size) for face, size in zip(faces, sizes) if face is not None]
    if not found:
        raise ValueError("no face was detected in any image of the dataset: nothing to fall back on")
    relative = np.mean([np.array(f.landmarks) / np.array(s) for f, s in found], axis=0)
    box = np.mean([np.array(f.box) / np.array(s * 2) for f, s in found], axis=0)
    return Face(box=tuple(box), score=0.0, landmarks=tuple(map(tuple, relative)))


def _scaled(face: Face, size: tuple[int, int]) -> Face:
    width, height = size
    return Face(
        box=(face.box[0] * width, face.box[1] * height, face.box[2] * width, face.box[3] * height),
        score=0.0,
        landmarks=tuple((x * width, y * height) for x, y in face.landmarks),
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def detect_dataset(
    detector: Detector,
    images_dir: Path,
    paths: list[str],
    policy: str,
    cache_dir: Path | None,
    batch_size: int,
) -> tuple[list[Face | None], list[tuple[int, int]]]:
    """The chosen face (None where none was found) and the size of each image, cached."""
    settings = json.dumps(detector.settings, sort_keys=True)
    cpu = json.dumps(describe_cpu(), sort_keys=True)  # a compiled detector's kernels round by ISA too
    cache_file = cache_dir / f"faces-{_digest(settings, cpu, policy, *paths)}.json" if cache_dir else None
    if cache_file and cache_file.exists():
        stored = json.loads(cache_file.read_text())
        faces = [Face(tuple(f["box"]), f["score"], tuple(map(tuple, f["landmarks"]))) if f else None
                 for f in stored["faces"]]
        return faces, [tuple(size) for size in stored["sizes"]]

    started = time.perf_counter()
    faces: list[Face | None] = []
    sizes: list[tuple[int, int]] = []
    for start in range(0, len(paths), batch_size):
        arrays = [to_array(load_image(images_dir / p)) for p in paths[start : start + batch_size]]
        for found, array in zip(detector.detect(arrays), arrays):
            size = (array.shape[1], array.shape[0])
            try:
                faces.append(select_face(found, policy, size))
            except NoFaceDetected:
                faces.append(None)
            sizes.append(size)
        if (start // batch_size) % 50 == 0:
            _log(f"detect {start + len(arrays)}/{len(paths)} ({time.perf_counter() - started:.0f} s)")
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        stored_faces = [
            {"box": f.box, "score": f.score, "landmarks": f.landmarks} if f else None for f in faces
        ]
        write_atomic(cache_file, json.dumps({"faces": stored_faces, "sizes": sizes}).encode())
    return faces, sizes


def embed_dataset(
    verifier: FaceVerifier,
    images_dir: str | Path,
    paths: list[str],
    *,
    policy: str = "central",
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    batch_size: int = 32,
) -> DatasetEmbeddings:
    """Detect, choose (`central` by default: dataset images such as LFW's are centred on the
    labelled person, while a larger face may be a bystander), align and encode each image of
    `paths` (relative to `images_dir`). Detections and embeddings are cached separately, so trying
    another template or encoder does not repeat detection."""
    images_dir = Path(images_dir)
    cache_dir = Path(cache_dir) if cache_dir else None
    faces, sizes = detect_dataset(verifier.detector, images_dir, paths, policy, cache_dir, batch_size)
    key = _digest(
        json.dumps(verifier.card.architecture.model_dump(), sort_keys=True),  # e.g. fusion weights
        verifier.precision,
        verifier.engine,
        json.dumps(describe_cpu(), sort_keys=True),  # int8 kernels round differently by ISA
        *(path.read_bytes() for path in verifier.card.network_files()),
        json.dumps([t.model_dump(include={"size", "points", "weights"}) for t in verifier.templates], sort_keys=True),
        str(ALIGNMENT_VERSION),
        json.dumps([f.landmarks if f else None for f in faces]),
    )
    cache_file = cache_dir / f"{verifier.card.name}-{key}.npz" if cache_dir else None
    if cache_file and cache_file.exists():
        with np.load(cache_file) as stored:
            return DatasetEmbeddings(paths, stored["raw"], stored["raw_mirrored"], stored["detected"])

    started = time.perf_counter()
    fallback = _fallback_face(faces, sizes)
    raw, raw_mirrored = [], []
    for start in range(0, len(paths), batch_size):
        batch = range(start, min(start + batch_size, len(paths)))
        arrays = [to_array(load_image(images_dir / paths[i])) for i in batch]
        chosen = [faces[i] or _scaled(fallback, sizes[i]) for i in batch]
        plain, mirrored = verifier.encoder.embed_with_mirror(verifier.align(arrays, chosen))
        raw.append(plain)
        raw_mirrored.append(mirrored)
        if (start // batch_size) % 50 == 0:
            _log(f"embed {batch.stop}/{len(paths)} ({time.perf_counter() - started:.0f} s)")

    result = DatasetEmbeddings(
        paths=list(paths),
        raw=np.concatenate(raw).astype(np.float32),
        raw_mirrored=np.concatenate(raw_mirrored).astype(np.float32),
        detected=np.array([face is not None for face in faces]),
    )
    _log(f"embedded {len(paths)} images in {time.perf_counter() - started:.0f} s")
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, raw=result.raw, raw_mirrored=result.raw_mirrored, detected=result.detected)
        write_atomic(cache_file, buffer.getvalue())
    return result


def embed_lfw(verifier: FaceVerifier, data_dir: Path) -> DatasetEmbeddings:
    """All 13,233 LFW images, so evaluation and calibration share one cached pass."""
    images_dir = data_dir / "lfw" / "images"
    paths = [p for images in identity_images(images_dir).values() for p in images]
    return embed_dataset(verifier, images_dir, paths)
