"""Alignment: warp each detected face so its five landmarks land on an encoder's template.

Coordinates are pixel-centre based throughout: (0, 0) is the centre of the top-left pixel, in the
image and in the chip alike, so a transform that maps landmarks to template points maps pixels to
chip pixels with no half-pixel shift.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np

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


def align_faces(image: np.ndarray, faces: Sequence[Face], template: AlignmentTemplate) -> np.ndarray:
    """One chip per face, (N, 3, size, size) float32 RGB with values 0..255 (not rounded).

    Each chip pixel is bilinearly sampled from the image at the inverse-transformed position;
    samples from outside the image count as black. A face more than twice the chip's scale is
    first box-averaged down by a whole factor, so the chip is not aliased and the work stays
    proportional to the chip, however large the photo.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("align_faces() takes a uint8 HxWx3 RGB array")
    size = template.size
    chips = np.zeros((len(faces), 3, size, size), dtype=np.float32)
    for chip, face in zip(chips, faces):
        _warp(image, _inverse(similarity_transform(face.landmarks, template.points, template.weights)), chip)
    return chips


def chips_to_uint8(chips: np.ndarray) -> np.ndarray:
    """Chips from align_faces as (N, size, size, 3) uint8 images, for saving or viewing."""
    return np.clip(np.rint(chips), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _inverse(transform: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine transform."""
    linear = np.linalg.inv(transform[:, :2])
    return np.hstack([linear, -linear @ transform[:, 2:]])


def _warp(image: np.ndarray, chip_to_image: np.ndarray, chip: np.ndarray) -> None:
    """Fill `chip` (3, size, size), zeros, so that its pixel (u, v) shows image position
    chip_to_image @ (u, v, 1)."""
    size = chip.shape[-1]
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
    if window.shape[0] == 0 or window.shape[1] == 0:  # a window thinner than one shrunk block
        return
    # Compose chip pixel -> image pixel -> window pixel (after the shrink: block i is centred on
    # pixel i * factor + (factor - 1) / 2). float64 keeps whole-pixel shifts exact.
    to_window = np.array([[1 / factor, 0, (-left - (factor - 1) / 2) / factor],
                          [0, 1 / factor, (-top - (factor - 1) / 2) / factor], [0, 0, 1]])
    chip_to_window = to_window @ np.vstack([chip_to_image, [0, 0, 1]])
    # Positions [v, u] = chip_to_window @ (u, v, 1), as two outer sums (a third of the time of a
    # product with a meshgrid).
    work = _scratch(size)
    steps = np.arange(size, dtype=np.float64)
    for position, (per_u, per_v, offset) in zip((work.x, work.y), chip_to_window[:2]):
        np.add.outer(steps * per_v + offset, steps * per_u, out=position.reshape(size, size))
    height, width = window.shape[:2]
    _bilinear(work.padded_planes(window), width, height, work)
    np.copyto(chip, work.samples.reshape(3, size, size), casting="same_kind")


class _Scratch:
    """The arrays one chip's sampling works in, kept per thread and chip size: allocated anew for
    every chip they would exceed glibc's mmap threshold, and the page faults of mapping them
    afresh each time cost more than the arithmetic (several times torch's grid_sample)."""

    def __init__(self, count: int):
        self.x, self.y, self.left, self.right, self.above, self.below, self.weight = np.empty((7, count))
        self.index, self.shifted = np.empty((2, count), dtype=np.intp)
        self.gathered, self.samples = np.empty((2, 3, count))
        self._planes = np.empty(0)

    def padded_planes(self, pixels: np.ndarray) -> np.ndarray:
        """(C, (H + 2) * (W + 2)) float64: each channel of `pixels` (H, W, C) with a border of
        zeros, flat, in a buffer kept for the next chip (grown when a window needs more)."""
        height, width, channels = pixels.shape
        if self._planes.size < channels * (height + 2) * (width + 2):
            self._planes = np.empty(channels * (height + 2) * (width + 2))
        planes = self._planes[: channels * (height + 2) * (width + 2)].reshape(channels, height + 2, width + 2)
        planes[:, [0, -1]] = 0
        planes[:, :, [0, -1]] = 0
        planes[:, 1:-1, 1:-1] = pixels.transpose(2, 0, 1)
        return planes.reshape(channels, -1)


_scratches = threading.local()


def _scratch(size: int) -> _Scratch:
    per_size = _scratches.__dict__.setdefault("per_size", {})
    if size not in per_size:
        per_size[size] = _Scratch(size * size)
    return per_size[size]


def _bilinear(planes: np.ndarray, width: int, height: int, work: _Scratch) -> None:
    """The image `planes` holds (see _Scratch.padded_planes) sampled at positions (work.x, work.y)
    (pixel-centre units) by bilinear interpolation, neighbours outside the image counting as zero,
    into work.samples (C, N). What torch's grid_sample computes (bilinear, zeros padding), in
    NumPy. Thanks to the border, every neighbour of a position within one pixel of the image is a
    real index; positions farther out sample the border's corner, which is zero. Every step writes
    into `work` (see _Scratch).
    """
    x, y = work.x, work.y
    far = (x <= -1) | (x >= width) | (y <= -1) | (y >= height)
    x[far] = y[far] = -1
    # Each neighbour's weight along an axis; x and y become the top-left neighbour's coordinates.
    np.subtract(x, np.floor(x, out=work.left), out=work.right)
    np.subtract(y, np.floor(y, out=work.above), out=work.below)
    np.subtract(1, work.right, out=work.left)
    np.subtract(1, work.below, out=work.above)
    np.subtract(x, work.right, out=x)
    np.subtract(y, work.below, out=y)
    y += 1
    y *= width + 2
    y += x
    y += 1
    np.copyto(work.index, y, casting="unsafe")  # exact: whole numbers in float64
    work.samples[...] = 0
    for offset, column_weight, row_weight in (
        (0, work.left, work.above), (1, work.right, work.above),
        (width + 2, work.left, work.below), (width + 3, work.right, work.below),
    ):
        np.add(work.index, offset, out=work.shifted)
        np.take(planes, work.shifted, axis=1, out=work.gathered)
        work.gathered *= np.multiply(column_weight, row_weight, out=work.weight)
        work.samples += work.gathered
