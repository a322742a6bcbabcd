"""Alignment: warp each detected face so its five landmarks land on an encoder's template.

Coordinates are pixel-centre based throughout: (0, 0) is the centre of the top-left pixel, in the
image and in the chip alike, so a transform that maps landmarks to template points maps pixels to
chip pixels with no half-pixel shift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from model.faces.types import LANDMARK_NAMES, Face

NUM_LANDMARKS = len(LANDMARK_NAMES)
POSITION_STEPS = 65536  # sampling positions are rounded to 1/POSITION_STEPS pixel


@dataclass(frozen=True)
class AlignmentTemplate:
    """Where an encoder wants the five landmarks (LANDMARK_NAMES order) in its size x size chip.

    `weights` say how much each landmark counts in the least-squares fit, e.g. to trust the eyes
    more than the mouth corners, which move with expression.
    """

    size: int
    points: tuple[tuple[float, float], ...]
    weights: tuple[float, ...] = (1.0,) * NUM_LANDMARKS

    def __post_init__(self) -> None:
        points = tuple((float(x), float(y)) for x, y in self.points)
        weights = tuple(float(w) for w in self.weights)
        if int(self.size) != self.size or self.size < 1:
            raise ValueError(f"template size must be a positive integer, not {self.size!r}")
        if len(points) != NUM_LANDMARKS or len(weights) != NUM_LANDMARKS:
            raise ValueError(f"a template needs {NUM_LANDMARKS} points and {NUM_LANDMARKS} weights")
        if min(weights) < 0 or sum(w > 0 for w in weights) < 2:
            raise ValueError("template weights must be >= 0 with at least two positive")
        if len(set(points)) < 2:
            raise ValueError("template points must not all coincide")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "weights", weights)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlignmentTemplate:
        """From the JSON form {"size": .., "points": [[x, y], ..], "weights": [..]} (weights
        optional)."""
        weights = data.get("weights")
        return cls(
            size=data["size"],
            points=tuple(tuple(point) for point in data["points"]),
            weights=(1.0,) * NUM_LANDMARKS if weights is None else tuple(weights),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "points": [list(point) for point in self.points],
            "weights": list(self.weights),
        }


def similarity_transform(
    src: np.ndarray | Sequence[Sequence[float]],
    dst: np.ndarray | Sequence[Sequence[float]],
    weights: np.ndarray | Sequence[float] | None = None,
) -> np.ndarray:
    """The rotation + uniform scale + translation (no reflection) that maps `src` points onto `dst`
    points with the least weighted squared error (Umeyama, 1991), as a 2x3 float64 matrix [sR | t].

    A similarity, not an affine map, so a face is never sheared or squashed to fit a template.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape:
        raise ValueError("need src and dst points of the same shape (N, 2)")
    weights = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(src),):
        raise ValueError("need one weight per point")
    if weights.min() < 0 or weights.sum() <= 0:
        raise ValueError("weights must be >= 0 and not all zero")
    weights = weights / weights.sum()
    src_mean = weights @ src
    dst_mean = weights @ dst
    src_centred = src - src_mean
    dst_centred = dst - dst_mean
    src_variance = weights @ (src_centred**2).sum(axis=1)
    if src_variance <= 0:
        raise ValueError("the source points coincide; no transform is defined")
    covariance = (dst_centred * weights[:, None]).T @ src_centred
    u, singular_values, vt = np.linalg.svd(covariance)
    # Flip the least significant axis when the best orthogonal map would be a reflection.
    signs = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ np.diag(signs) @ vt
    scale = (singular_values * signs).sum() / src_variance
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align_faces(image: np.ndarray, faces: Sequence[Face], template: AlignmentTemplate) -> Tensor:
    """One chip per face, (N, 3, size, size) float32 RGB with values 0..255 (not rounded).

    Each chip pixel is bilinearly sampled from the image at the inverse-transformed position;
    samples from outside the image count as black. All faces are sampled in one vectorised gather.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("align_faces() takes a uint8 HxWx3 RGB array")
    size = template.size
    if not faces:
        return torch.zeros(0, 3, size, size)
    image_to_chip = [
        similarity_transform(face.landmarks, template.points, template.weights) for face in faces
    ]
    chip_to_image = torch.from_numpy(np.stack([_inverse(transform) for transform in image_to_chip]))
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), axis=-1)
    chip_points = torch.from_numpy(np.concatenate([grid, np.ones((size, size, 1))], axis=-1))
    positions = torch.einsum("hwk,njk->nhwj", chip_points, chip_to_image)  # (N, size, size, 2)
    # Snap to 1/65536 pixel: invisible, but an exact transform (identity, whole-pixel shift) then
    # samples each pixel exactly instead of mixing in 1e-12 of its neighbours from rounding noise.
    positions = (positions * POSITION_STEPS).round_() / POSITION_STEPS
    return _bilinear_sample(image, positions)


def chips_to_uint8(chips: Tensor) -> np.ndarray:
    """Chips from align_faces as (N, size, size, 3) uint8 images, for saving or viewing."""
    return chips.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _inverse(transform: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine transform."""
    linear = np.linalg.inv(transform[:, :2])
    return np.hstack([linear, -linear @ transform[:, 2:]])


def _bilinear_sample(image: np.ndarray, positions: Tensor) -> Tensor:
    """Sample a uint8 (H, W, 3) image at float64 (x, y) positions (N, h, w, 2): (N, 3, h, w).

    Written out rather than F.grid_sample so that integer positions return the pixel exactly (the
    normalised grid coordinates would round), and only the four neighbours are ever converted to
    float.
    """
    height, width = image.shape[:2]
    pixels = np.ascontiguousarray(image).reshape(-1, 3)
    x, y = positions.unbind(-1)
    x0, y0 = x.floor(), y.floor()
    fx = (x - x0).float()[..., None]
    fy = (y - y0).float()[..., None]
    x0, y0 = x0.long(), y0.long()

    def neighbour(dx: int, dy: int) -> Tensor:
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
        index = yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)
        return torch.from_numpy(pixels[index.numpy()]).float() * inside[..., None]

    top = neighbour(0, 0) * (1 - fx) + neighbour(1, 0) * fx
    bottom = neighbour(0, 1) * (1 - fx) + neighbour(1, 1) * fx
    return (top * (1 - fy) + bottom * fy).permute(0, 3, 1, 2).contiguous()
