"""Training data: identity folders, identity-disjoint splits, cached aligned chips, augmentation.

A dataset is a folder with one sub-folder per identity. Faces are detected and aligned once, by the
service's own stages (the detector the template's card names, face choice, similarity warp to the
template), and the chips are cached as uint8 under cache/chips: training sees exactly the chips the
service would compute, and epochs cost only the encoder. Augmentation runs on whole batches of
chips in torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from model.errors import NoFaceDetected
from model.evaluation.protocols import identity_images
from model.faces.align import ALIGNMENT_VERSION
from model.faces.detectors import Detector
from model.files import write_atomic
from model.images import load_image, to_array
from model.paths import CACHE_DIR
from model.types import AlignmentTemplate, Face
from model.verify.pipeline import align_chips, locate_faces

DEFAULT_CHIP_CACHE = CACHE_DIR / "chips"
SPLITS = ("train", "val", "test")


def read_image(path: str | Path) -> np.ndarray:
    """A dataset image as uint8 HxWx3 RGB, through model.images like uploads, in any format Pillow
    reads: dataset files come in formats uploads are refused in (AT&T's PGM)."""
    return to_array(load_image(path, formats=None))


def natural_key(name: str) -> list:
    """s2 before s10: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


# -- splits -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Identity names per part; no identity is in two parts."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def __post_init__(self) -> None:
        seen = [name for part in SPLITS for name in getattr(self, part)]
        if len(seen) != len(set(seen)):
            raise ValueError("a split must not share identities between train, val and test")

    def to_dict(self) -> dict[str, list[str]]:
        return {part: list(getattr(self, part)) for part in SPLITS}


def make_split(identities: Sequence[str], val: int, test: int | Collection[str], seed: int | None = None) -> Split:
    """The last `test` identities are the test part and the `val` before them validation, in natural
    order (s1, s2, .., s40), or in an order shuffled by `seed` when one is given.

    `test` may instead name the test identities themselves (the people of a protocol's test pairs);
    validation is then the last `val` of the others, in that same order, and training the rest.
    """
    names = sorted(identities, key=natural_key)
    if isinstance(test, int):
        held_out = test
    else:
        test_names, held_out = set(test), 0
        if test_names - set(names):
            raise ValueError(f"test identities the dataset lacks: {sorted(test_names - set(names))[:5]}")
        names = [name for name in names if name not in test_names]
    if seed is not None:
        random.Random(seed).shuffle(names)
    if val < 0 or held_out < 0 or val + held_out >= len(names):
        raise ValueError(f"cannot hold out {val} + {held_out} of {len(names)} identities")
    cut_val, cut_test = len(names) - held_out - val, len(names) - held_out
    test_part = names[cut_test:] if isinstance(test, int) else sorted(test_names, key=natural_key)
    return Split(tuple(names[:cut_val]), tuple(names[cut_val:cut_test]), tuple(test_part))


def load_or_make_split(path: str | Path | None, identities: Sequence[str], val: int, test: int | Collection[str],
                       seed: int | None = None) -> Split:
    """Read the split from `path`; if there is none yet, make it and write it there, so every later
    run and every report uses the very same identities. Without a path the split is made afresh: one
    fixed by a protocol's pairs and a seed needs no file (the weights card records it)."""
    if path is None:
        return make_split(identities, val, test, seed)
    path = Path(path)
    if path.exists():
        split = Split(**{part: tuple(names) for part, names in json.loads(path.read_text()).items()})
        missing = {name for part in SPLITS for name in getattr(split, part)} - set(identities)
        if missing:
            raise ValueError(f"{path} names identities the dataset lacks: {sorted(missing)[:5]}")
        return split
    split = make_split(identities, val, test, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(split.to_dict(), indent=2) + "\n")
    return split


# -- aligned chips ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceSet:
    """Aligned chips of some identities: chips (N, 3, S, S) uint8, labels (N,) indexing `identities`,
    and `detected` False where no face was found and the centred crop stood in."""

    chips: Tensor
    labels: Tensor
    identities: tuple[str, ...]
    paths: tuple[str, ...]
    detected: np.ndarray

    def subset(self, identities: Sequence[str]) -> FaceSet:
        """The chips of these identities, relabelled 0..len(identities) - 1 in their order."""
        label_of = {name: index for index, name in enumerate(identities)}
        names = [self.identities[label] for label in self.labels.tolist()]
        keep = [i for i, name in enumerate(names) if name in label_of]
        return FaceSet(
            chips=self.chips[keep],
            labels=torch.tensor([label_of[names[i]] for i in keep], dtype=torch.long),
            identities=tuple(identities),
            paths=tuple(self.paths[i] for i in keep),
            detected=self.detected[keep],
        )


def centred_face(size: tuple[int, int], template: AlignmentTemplate) -> Face:
    """The face whose landmarks put the template's points on the image's largest centred square:
    aligned, it is that square resized to the chip. The stand-in where detection fails, as on some
    of AT&T's small grey images, which are framed on the face anyway."""
    width, height = size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2  # the square's edges, in pixel-edge units
    scale = side / template.size
    # Pixel-centre coordinates (model/faces/align.py): chip x maps to left - 0.5 + (x + 0.5) * scale.
    landmarks = tuple((left - 0.5 + (x + 0.5) * scale, top - 0.5 + (y + 0.5) * scale) for x, y in template.points)
    return Face(box=(left - 0.5, top - 0.5, left + side - 0.5, top + side - 0.5), score=0.0, landmarks=landmarks)


def _locate(detector: Detector, arrays: list[np.ndarray], policy: str) -> list[Face | None]:
    """The chosen face per image, None where none was found: a batch with a miss is re-run image
    by image, so the other images keep their faces."""
    try:
        return [face for face, _ in locate_faces(detector, arrays, policy)]
    except NoFaceDetected:
        if len(arrays) == 1:
            return [None]
        return [face for array in arrays for face in _locate(detector, [array], policy)]


def load_face_set(
    images_dir: str | Path,
    identities: Sequence[str],
    template: AlignmentTemplate,
    detector: Detector,
    *,
    policy: str = "central",
    cache_dir: str | Path | None = DEFAULT_CHIP_CACHE,
    batch_size: int = 32,
) -> FaceSet:
    """Chips of every image of `identities` (sub-folders of `images_dir`), cached.

    `detector` is the one the template was fitted to (its card's). `central` is the face choice,
    as for the evaluation datasets: a dataset image is framed on its labelled person. The cache key
    covers the template, the detector's settings, the alignment code's version, the face choice
    and the image list, so a stale cache is never read.
    """
    images_dir = Path(images_dir)
    by_identity = identity_images(images_dir)
    paths = [path for name in identities for path in by_identity[name]]
    labels = [index for index, name in enumerate(identities) for _ in by_identity[name]]
    geometry = template.model_dump(include={"size", "points", "weights"})
    key = [geometry, detector.settings, ALIGNMENT_VERSION, policy, paths]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache_file = Path(cache_dir) / f"{images_dir.name}-{digest}.npz" if cache_dir else None

    if cache_file and cache_file.exists():
        stored = np.load(cache_file)
        chips, detected = torch.from_numpy(stored["chips"]), stored["detected"]
    else:
        started = time.perf_counter()
        batches, found = [], []
        for start in range(0, len(paths), batch_size):
            arrays = [read_image(images_dir / path) for path in paths[start : start + batch_size]]
            faces = _locate(detector, arrays, policy)
            found += [face is not None for face in faces]
            chosen = [face or centred_face((a.shape[1], a.shape[0]), template) for face, a in zip(faces, arrays)]
            chips = align_chips(arrays, chosen, [template])[0]
            batches.append(np.clip(np.rint(chips), 0, 255).astype(np.uint8))
        chips, detected = torch.from_numpy(np.concatenate(batches)), np.array(found, dtype=bool)
        print(f"aligned {len(paths)} images of {images_dir} in {time.perf_counter() - started:.0f} s; "
              f"{int((~detected).sum())} without a detected face (centred crop)", file=sys.stderr)
        if cache_file:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            np.savez(buffer, chips=chips.numpy(), detected=detected)
            write_atomic(cache_file, buffer.getvalue())
    return FaceSet(chips, torch.tensor(labels, dtype=torch.long), tuple(identities), tuple(paths), detected)


# -- augmentation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augment:
    """Random, label-preserving changes to a batch of float chips (N, 3, H, W), 0..255.

    Each chip draws its own: a horizontal flip with probability `flip`; a zoom in [1 - scale,
    1 + scale] and a shift of up to `shift` of the chip side per axis, in one affine resampling
    (edges replicated, since a real chip's border is face or background, not black); brightness,
    contrast and saturation factors in [1 - x, 1 + x]; greyscale with probability `greyscale`; and a
    3x3 Gaussian blur (sigma 1) with probability `blur`. Alignment already fixed rotation and scale,
    so the geometric changes stay small: they stand for the landmark detector's jitter.
    """

    flip: float = 0.5
    scale: float = 0.05
    shift: float = 0.05
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    greyscale: float = 0.1
    blur: float = 0.1

    def __call__(self, chips: Tensor, generator: torch.Generator) -> Tensor:
        count = len(chips)

        def uniform(low: float, high: float) -> Tensor:
            return low + (high - low) * torch.rand(count, generator=generator)

        def chance(p: float) -> Tensor:
            return torch.rand(count, generator=generator) < p

        # Geometry: the grid maps output to input coordinates, so a zoom by z samples 1/z of the chip.
        zoom = 1 / uniform(1 - self.scale, 1 + self.scale)
        mirror = torch.where(chance(self.flip), -1.0, 1.0)
        theta = torch.zeros(count, 2, 3)
        theta[:, 0, 0] = zoom * mirror
        theta[:, 1, 1] = zoom
        theta[:, 0, 2] = uniform(-2 * self.shift, 2 * self.shift)  # the chip spans 2 in grid units
        theta[:, 1, 2] = uniform(-2 * self.shift, 2 * self.shift)
        grid = F.affine_grid(theta, list(chips.shape), align_corners=False)
        x = F.grid_sample(chips, grid, mode="bilinear", padding_mode="border", align_corners=False)

        # Colour: brightness scales, contrast pulls towards the chip's mean grey, saturation towards
        # each pixel's grey.
        x = x * uniform(1 - self.brightness, 1 + self.brightness).view(-1, 1, 1, 1)
        grey = _luma(x)
        mean = grey.mean((2, 3), keepdim=True)
        x = mean + (x - mean) * uniform(1 - self.contrast, 1 + self.contrast).view(-1, 1, 1, 1)
        grey = _luma(x)
        x = grey + (x - grey) * uniform(1 - self.saturation, 1 + self.saturation).view(-1, 1, 1, 1)
        x = torch.where(chance(self.greyscale).view(-1, 1, 1, 1), _luma(x).expand_as(x), x)
        x = torch.where(chance(self.blur).view(-1, 1, 1, 1), _blur(x), x)
        return x.clamp(0, 255)


def _luma(x: Tensor) -> Tensor:
    """ITU-R 601 grey, (N, 1, H, W)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def _blur(x: Tensor) -> Tensor:
    taps = torch.tensor([0.27406862, 0.45186276, 0.27406862], dtype=x.dtype)  # Gaussian, sigma 1
    kernel = (taps[:, None] * taps[None, :]).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=x.shape[1])
