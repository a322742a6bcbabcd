"""Alignment: warp each detected face so its five landmarks land on an encoder's template.

Coordinates are pixel-centre based throughout: (0, 0) is the centre of the top-left pixel, in the
image and in the chip alike, so a transform that maps landmarks to template points maps pixels to
chip pixels with no half-pixel shift. The transform is fitted and the image's window cut in NumPy (and
box-averaged by Pillow); the bilinear sampling runs as a small graph compiled by OpenVINO
(GridSample), as fast as torch's grid_sample was here and torch-free.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from model.engines.openvino import CompiledNetwork, compile_model
from model.types import AlignmentTemplate, Face

# Bumped whenever a change here changes the chips, so caches of aligned chips are never stale.
# 2: sampled by the compiled graph, positions in float32 (about 1e-5 pixel); 3: large faces box-averaged
# by Pillow, to 8 bits.
ALIGNMENT_VERSION = 3


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
    if factor > 1:  # Pillow's block means, rounded to 8 bits: a tenth of NumPy's float64 passes' time
        rows, columns = window.shape[0] // factor * factor, window.shape[1] // factor * factor
        window = np.asarray(Image.fromarray(np.ascontiguousarray(window[:rows, :columns])).reduce(factor))
    if window.shape[0] == 0 or window.shape[1] == 0:  # a window thinner than one shrunk block
        return
    # Compose chip pixel -> image pixel -> window pixel (after the shrink: block i is centred on
    # pixel i * factor + (factor - 1) / 2) -> GridSample's [-1, 1] units (align_corners false), in
    # float64; the sampler gets the result as float32 (about 1e-5 pixel).
    window_height, window_width = window.shape[:2]
    to_window = np.array([[1 / factor, 0, (-left - (factor - 1) / 2) / factor],
                          [0, 1 / factor, (-top - (factor - 1) / 2) / factor], [0, 0, 1]])
    to_unit = np.array([[2 / window_width, 0, 1 / window_width - 1],
                        [0, 2 / window_height, 1 / window_height - 1], [0, 0, 1]])
    chip_to_unit = (to_unit @ to_window @ np.vstack([chip_to_image, [0, 0, 1]]))[:2]
    _sampler(size).infer_into(chip, np.asarray(window, dtype=np.float32)[None], chip_to_unit.T.astype(np.float32))


@functools.cache
def _sampler(size: int) -> CompiledNetwork:
    """A compiled graph that samples a (1, H, W, 3) float32 window at the chip's positions: the
    positions are the grid (u, v, 1) @ `chip_to_unit` (3, 2), in GridSample's [-1, 1] units, and the
    sampling bilinear with zeros outside (OpenVINO's GridSample, what torch's grid_sample computes).
    One graph per chip size, compiled on first use (a few milliseconds), on one thread: the
    sampling takes about a third of a millisecond per 150-pixel chip, and NumPy's dozens of passes
    over the chip about twice that."""
    import openvino as ov
    import openvino.opset9 as ops

    window = ops.parameter([1, -1, -1, 3], np.float32, name="window")
    chip_to_unit = ops.parameter([3, 2], np.float32, name="chip_to_unit")
    v, u = np.mgrid[0:size, 0:size].astype(np.float32)
    grid = np.stack([u.ravel(), v.ravel(), np.ones(size * size, np.float32)], axis=1)
    positions = ops.reshape(ops.matmul(ops.constant(grid), chip_to_unit, False, False),
                            ops.constant(np.array([1, size, size, 2], np.int64)), False)
    chip = ops.grid_sample(ops.transpose(window, ops.constant(np.array([0, 3, 1, 2], np.int64))), positions,
                           {"align_corners": False, "mode": "bilinear", "padding_mode": "zeros"})
    return CompiledNetwork(compile_model(ov.Model([chip], [window, chip_to_unit], f"align{size}"), "float32", 2))
