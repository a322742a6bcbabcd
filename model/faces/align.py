"""Alignment: warp each detected face so its five landmarks land on an encoder's template.

Coordinates are pixel-centre based throughout: (0, 0) is the centre of the top-left pixel, in the
image and in the chip alike, so a transform that maps landmarks to template points maps pixels to
chip pixels with no half-pixel shift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from model.types import AlignmentTemplate, Face

# Bumped whenever a change here changes the chips, so caches of aligned chips are never stale.
ALIGNMENT_VERSION = 1


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
    samples from outside the image count as black. A face more than twice the chip's scale is
    first box-averaged down by a whole factor, so the chip is not aliased and the work stays
    proportional to the chip, however large the photo.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("align_faces() takes a uint8 HxWx3 RGB array")
    size = template.size
    if not faces:
        return torch.zeros(0, 3, size, size)
    chips = [
        _warp(image, _inverse(similarity_transform(face.landmarks, template.points, template.weights)), size)
        for face in faces
    ]
    return torch.stack(chips)


def chips_to_uint8(chips: Tensor) -> np.ndarray:
    """Chips from align_faces as (N, size, size, 3) uint8 images, for saving or viewing."""
    return chips.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _inverse(transform: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine transform."""
    linear = np.linalg.inv(transform[:, :2])
    return np.hstack([linear, -linear @ transform[:, 2:]])


def _warp(image: np.ndarray, chip_to_image: np.ndarray, size: int) -> Tensor:
    """The (3, size, size) chip whose pixel (u, v) shows image position chip_to_image @ (u, v, 1)."""
    height, width = image.shape[:2]
    # The window of the image the chip's samples (and their right and lower neighbours) touch.
    corners = chip_to_image @ np.array([[0, size - 1, 0, size - 1], [0, 0, size - 1, size - 1], [1, 1, 1, 1]])
    # Image pixels per chip pixel; shrink by a whole factor when the chip would skip pixels, in
    # blocks on the image's own grid.
    factor = max(1, int(math.sqrt(abs(np.linalg.det(chip_to_image[:, :2]))) + 1e-9))
    left, top = np.clip(np.floor(corners.min(axis=1)), 0, (width - 1, height - 1)).astype(int) // factor * factor
    # Whole blocks: the last sample's right neighbour lies in a block ending within 2 factors of it.
    right, bottom = np.clip(np.floor(corners.max(axis=1)) + 2 * factor - 1, 0, (width - 1, height - 1)).astype(int)
    window = image[top : bottom + 1, left : right + 1]
    if factor > 1:
        rows, columns = window.shape[0] // factor * factor, window.shape[1] // factor * factor
        window = window[:rows, :columns].reshape(rows // factor, factor, columns // factor, factor, 3)
        window = window.mean(axis=(1, 3))
    # float64 keeps whole-pixel shifts exact (the [-1, 1] grid units would round in float32); the
    # window is at most about 3 chip widths on a side, so this costs little.
    pixels = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float64)).permute(2, 0, 1)
    if pixels.shape[1] == 0 or pixels.shape[2] == 0:  # a window thinner than one shrunk block
        return torch.zeros(3, size, size)
    window_height, window_width = pixels.shape[1:]
    # Compose chip pixel -> image pixel -> window pixel (after the shrink: block i is centred on
    # pixel i * factor + (factor - 1) / 2) -> grid_sample's [-1, 1] units (align_corners=False).
    to_window = np.array([[1 / factor, 0, (-left - (factor - 1) / 2) / factor],
                          [0, 1 / factor, (-top - (factor - 1) / 2) / factor], [0, 0, 1]])
    to_unit = np.array([[2 / window_width, 0, 1 / window_width - 1], [0, 2 / window_height, 1 / window_height - 1],
                        [0, 0, 1]])
    chip_to_unit = to_unit @ to_window @ np.vstack([chip_to_image, [0, 0, 1]])
    # grid[v, u] = chip_to_unit @ (u, v, 1), as two outer sums (a third of the time of a product
    # with a meshgrid).
    steps = np.arange(size, dtype=np.float64)
    grid = np.empty((size, size, 2))
    for axis, (per_u, per_v, offset) in enumerate(chip_to_unit[:2]):
        np.add.outer(steps * per_v + offset, steps * per_u, out=grid[:, :, axis])
    chip = F.grid_sample(pixels[None], torch.from_numpy(grid[None]), mode="bilinear", padding_mode="zeros",
                         align_corners=False)
    return chip[0].float()
