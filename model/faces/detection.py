"""What every face detector does around its network: check the input, detect on a working copy no
larger than it needs, suppress overlapping boxes, and map the results back to the image's pixels.
`FaceDetector` does these chores; a detector implements only its networks' pass over working copies.

Coordinates are pixel-centre based throughout ((0, 0) is the centre of the top-left pixel, as in
model/faces/align.py), so a point maps between resolutions as (p + 0.5) * scale - 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from model.paths import WEIGHTS_DIR
from model.types import Face

NMS_BLOCK = 2048  # boxes per block of the NMS overlap matrix: bounds its memory on any input


def shipped_weights(folder: str) -> Path:
    """A detector's weights folder as the checkout ships it."""
    return WEIGHTS_DIR / folder


def check_images(images: Sequence[np.ndarray]) -> None:
    for image in images:
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
            raise ValueError("detect() takes uint8 HxWx3 RGB arrays")


def working_copy(image: np.ndarray, max_side: int) -> np.ndarray:
    """The image, or an area-downscaled copy whose longest side is `max_side`: a detector's cost
    grows with the pixel count, while the face a verification photo is taken of stays well above
    the smallest face it looks for at that resolution."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    factor = max_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    copy = Image.fromarray(np.ascontiguousarray(image))
    # Block means by the whole part of the factor first (Pillow's reduce, a quarter of a box resize's
    # time), then a box resize of the rest: within a grey level of one box resize.
    whole = int(1 / factor)
    if whole >= 2:
        copy = copy.reduce(whole)
    return np.asarray(copy.resize(size, Image.Resampling.BOX))


def face_in_image(
    corners: np.ndarray, landmarks: np.ndarray, score: float, image: np.ndarray, working: np.ndarray
) -> Face:
    """A Face in `image`'s pixels from a detection in `working`'s: box corners (2, 2) as
    [[x1, y1], [x2, y2]] and landmarks (5, 2)."""
    (height, width), (working_height, working_width) = image.shape[:2], working.shape[:2]
    scale = np.array([width / working_width, height / working_height])
    box = (np.asarray(corners, np.float64) + 0.5) * scale - 0.5
    points = (np.asarray(landmarks, np.float64) + 0.5) * scale - 0.5
    return Face(
        box=tuple(float(v) for v in box.reshape(4)),
        score=float(score),
        landmarks=tuple((float(x), float(y)) for x, y in points),
    )


# One detection in a working copy's pixels: box corners (2, 2) as [[x1, y1], [x2, y2]], landmarks
# (5, 2) in LANDMARK_NAMES order, and the score.
Detection = tuple[np.ndarray, np.ndarray, float]


class FaceDetector:
    """A face detector with five-point landmarks. Subclasses name themselves (`name`), say what
    else changes their results (`own_settings`) and implement `detect_working`; nothing is mutated
    while detecting, so one instance can serve concurrent requests."""

    name = "detector"
    # Whether faces smaller than min_face_size (both sides, in the image's pixels) are left out after
    # detection, for a network that finds smaller ones too.
    drops_small_faces = False

    def __init__(self, min_face_size: int, max_side: int, first_side: int | None = None):
        if min_face_size < 1 or max_side < 1 or (first_side is not None and not 1 <= first_side <= max_side):
            raise ValueError("need min_face_size >= 1, max_side >= 1 and first_side (if any) in [1, max_side]")
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.first_side = first_side

    def own_settings(self) -> dict[str, Any]:
        return {}

    @property
    def settings(self) -> dict[str, Any]:
        """What changes its results: for reports and cache keys."""
        looks = {"first_side": self.first_side} if self.first_side else {}
        return {"name": self.name, "min_face_size": self.min_face_size, **self.own_settings(),
                "max_side": self.max_side, **looks}

    def detect_working(self, working: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detections in each working copy, best score first."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """Detect once, so that the first request prepares nothing."""
        blank = np.zeros((160, 160, 3), dtype=np.uint8)
        self.detect([blank, blank])

    def detect(self, images: Sequence[np.ndarray], every_face: bool = False) -> list[list[Face]]:
        """Faces in each image (uint8 HxWx3 RGB), best score first, in that image's pixels.

        An image whose longest side exceeds `max_side` is detected on a copy downscaled to it, and
        the results are scaled back (see working_copy). A detector with a `first_side` looks at
        each image that large first, and again at `max_side` only where that finds no face: the face
        a verification photo is taken of is found at a quarter of the cost. `every_face` (group
        photos, face_policy=all or reject) looks at `max_side` at once, where the small faces are.
        """
        check_images(images)
        if not images:
            return []
        side = self.first_side if self.first_side and not every_face else self.max_side
        first = [working_copy(image, side) for image in images]
        found = list(zip(first, self.detect_working(first)))
        again = [index for index, (copy, detections) in enumerate(found)
                 if not detections and max(images[index].shape[:2]) > side and side < self.max_side]
        if again:
            working = [working_copy(images[index], self.max_side) for index in again]
            for index, copy, detections in zip(again, working, self.detect_working(working)):
                found[index] = (copy, detections)
        faces = [
            [face_in_image(corners, landmarks, score, image, copy) for corners, landmarks, score in detections]
            for image, (copy, detections) in zip(images, found)
        ]
        if self.drops_small_faces:
            faces = [[face for face in image_faces if max(face.width, face.height) >= self.min_face_size]
                     for image_faces in faces]
        return faces


def box_overlaps(a: np.ndarray, b: np.ndarray, over_smaller: bool) -> np.ndarray:
    """Overlap of every box in `a` with every box in `b`: IoU with areas (x2-x1)*(y2-y1) as in
    torchvision, or with `over_smaller` the intersection over the smaller box in inclusive-pixel
    units (+1) as in facenet-pytorch's final NMS."""
    extra = a.dtype.type(1.0 if over_smaller else 0.0)
    a, b = a[:, None, :], b[None, :, :]
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + extra
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + extra
    intersection = np.maximum(width, 0) * np.maximum(height, 0)
    area_a = (a[..., 2] - a[..., 0] + extra) * (a[..., 3] - a[..., 1] + extra)
    area_b = (b[..., 2] - b[..., 0] + extra) * (b[..., 3] - b[..., 1] + extra)
    with np.errstate(divide="ignore", invalid="ignore"):  # empty boxes overlap nothing
        if over_smaller:
            return intersection / np.minimum(area_a, area_b)
        return intersection / (area_a + area_b - intersection)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    groups: np.ndarray | None = None,
    over_smaller: bool = False,
) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the boxes kept, best score first.

    A box is dropped when a kept, better-scoring box of the same group (image) overlaps it by more
    than `threshold`. The greedy pass is solved as a fixed point on the overlap matrix rather than
    by a loop over boxes: "kept = not overlapped by a better kept box" is re-evaluated for all boxes
    at once until nothing changes. Each round settles at least the next box in score order, and in
    practice a handful of rounds settle all. Blocks of NMS_BLOCK boxes bound the matrix's memory.
    """
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    groups = None if groups is None else np.asarray(groups)[order]

    def overlapping(rows: np.ndarray | slice, cols: slice) -> np.ndarray:
        result = box_overlaps(boxes[rows], boxes[cols], over_smaller) > threshold
        if groups is not None:
            result &= groups[rows][:, None] == groups[cols][None, :]
        return result

    keep = np.ones(len(order), dtype=bool)
    for start in range(0, len(order), NMS_BLOCK):
        block = slice(start, start + NMS_BLOCK)
        unsuppressed = ~overlapping(np.flatnonzero(keep[:start]), block).any(0)
        suppresses = np.triu(overlapping(block, block), k=1)  # better boxes come first
        block_keep = unsuppressed
        while True:
            settled = unsuppressed & ~(suppresses & block_keep[:, None]).any(0)
            if np.array_equal(settled, block_keep):
                break
            block_keep = settled
        keep[block] = block_keep
    return order[keep]
