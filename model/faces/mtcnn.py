"""MTCNN face detection (Zhang et al., 2016), numerically following facenet-pytorch, in NumPy.

The networks (model/faces/networks/mtcnn.py) and weights are facenet-pytorch 2.6.0's (weights/mtcnn,
see model/convert/mtcnn.py), and the cascade reproduces its `detect_face`: the same image pyramid, area resampling, pixel
normalisation, thresholds, NMS passes, box regression and landmark decoding. It is re-written
rather than imported so that detection needs neither torchvision nor OpenCV, runs the R-Net and
O-Net crops of all images in one pass each, and keeps photo-sized inputs fast (`max_side`, see
`FaceDetector.detect` in model/faces/detection.py). The cascade is NumPy in float32, as torch
computed it; the networks run on either engine: compiled by OpenVINO from the models the converter
saved beside the weights (pnet.xml, rnet.xml, onet.xml: serving converts nothing and needs no
torch), or on torch, the reference.

The box arithmetic keeps facenet-pytorch's conventions, inherited from the original Matlab code
(hence the odd +1/-1 terms); results are (x1, y1, x2, y2) boxes and landmarks in the input image's
pixel coordinates, (0, 0) being the centre of the top-left pixel as in model/faces/align.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from model.engines.compile import Network, load_network
from model.faces.detection import Detection, FaceDetector, nms, shipped_weights

DEFAULT_WEIGHTS_DIR = shipped_weights("mtcnn")
# Each network's weights and, beside them, the same network as an OpenVINO model taking NHWC input.
# File stem -> the class in model/faces/networks/mtcnn.py, in the cascade's order.
NETWORKS = {"pnet": "PNet", "rnet": "RNet", "onet": "ONet"}
WEIGHTS_FILES = tuple(f"{name}.pt" for name in NETWORKS)
COMPILED_FILES = tuple(f"{name}.xml" for name in NETWORKS)
# What a traced network is shown: P-Net one image (batch, height and width free); R- and O-Net a
# batch of crops (the batch free).
EXAMPLE_INPUTS = ((1, 3, 48, 48), (2, 3, 24, 24), (2, 3, 48, 48))
DYNAMIC_AXES = (((0, 2, 3),), ((0,),), ((0,),))

PIXEL_MEAN = 127.5
PIXEL_SCALE = 0.0078125  # 1/128: the networks were trained on (pixel - 127.5) / 128
PNET_STRIDE = 2  # P-Net scores one 12x12 window every 2 pixels of its input
PNET_WINDOW = 12
RNET_SIZE = 24
ONET_SIZE = 48
PNET_SCALE_NMS = 0.5  # within one pyramid level
PNET_NMS = 0.7  # across the levels of one image
RNET_NMS = 0.7
ONET_NMS = 0.7  # intersection over the smaller box, as facenet-pytorch's final pass
PNET_STRIP_ROWS = 128  # P-Net output rows per pass over a pyramid level, see _pnet_in_strips


def _pnet_in_strips(pnet: Network, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P-Net over a pyramid level (1, H, W, 3) in horizontal strips of up to PNET_STRIP_ROWS output rows.

    Output row i depends only on input rows [2i, 2i + 12), so strips overlapping by 10 input rows
    give the maps of a single pass, while each strip's intermediate maps stay small enough to stay
    in cache and be reused by the allocator: on a 1280x960 photo this takes about a quarter off
    the whole detection.
    """
    output_rows = (level.shape[1] - 1) // 2 - 4  # 3x3 conv, 2x2 ceil-mode pool, two 3x3 convs
    offsets, probabilities = [], []
    for first in range(0, output_rows, PNET_STRIP_ROWS):
        last = min(first + PNET_STRIP_ROWS, output_rows)
        rows = slice(PNET_STRIDE * first, PNET_STRIDE * (last - 1) + PNET_WINDOW)
        strip_offsets, strip_probability = pnet(level[:, rows])
        offsets.append(strip_offsets)
        probabilities.append(strip_probability)
    return np.concatenate(offsets, axis=2), np.concatenate(probabilities, axis=1)


def _area_bounds(length: np.ndarray | int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each of `size` windows over `length` pixels, exactly as torch's
    area interpolation (adaptive average pooling) places them. `length` may be a column array."""
    index = np.arange(size)
    return (index * length) // size, ((index + 1) * length + size - 1) // size


class _SummedAreaTables:
    """Summed-area tables of a batch of uint8 images in one flat buffer.

    Area resampling of any rectangle then costs four lookups per output pixel whatever its size,
    so each pyramid level, and the R-/O-Net crops of all images at once, come out of a few
    vectorised gathers instead of one interpolation per level or per box. The integer sums are
    exact, and dividing by the window height, then its width, in float32 reproduces torch's
    F.interpolate(mode="area") bit for bit. Results are channels-last (NHWC), as the networks take them.
    """

    def __init__(self, images: Sequence[np.ndarray]):
        self.shapes = [image.shape[:2] for image in images]
        pixels = [(height + 1) * (width + 1) for height, width in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(pixels)[:-1]]).astype(np.int64)
        exact_in_int32 = max(height * width for height, width in self.shapes) * 255 < 2**31
        self.buffer = np.zeros((sum(pixels), 3), dtype=np.int32 if exact_in_int32 else np.int64)
        for image, offset, size in zip(images, self.offsets, pixels):
            height, width = image.shape[:2]
            interior = self.buffer[offset : offset + size].reshape(height + 1, width + 1, 3)[1:, 1:]
            interior[...] = image
            # In-place accumulate runs as whole-row additions (np.cumsum along axis 0 is 3x slower).
            np.add.accumulate(interior, axis=0, out=interior)
            np.add.accumulate(interior, axis=1, out=interior)

    def table(self, index: int) -> np.ndarray:
        height, width = self.shapes[index]
        start = int(self.offsets[index])
        return self.buffer[start : start + (height + 1) * (width + 1)].reshape(height + 1, width + 1, 3)

    def resize(self, index: int, height: int, width: int) -> np.ndarray:
        """Image `index` area-resampled to height x width: (1, height, width, 3) float32."""
        table = self.table(index)
        y0, y1 = _area_bounds(self.shapes[index][0], height)
        x0, x1 = _area_bounds(self.shapes[index][1], width)
        rows = np.take(table, y1, axis=0) - np.take(table, y0, axis=0)
        sums = np.take(rows, x1, axis=1) - np.take(rows, x0, axis=1)
        averages = sums.astype(np.float32)
        averages /= (y1 - y0).astype(np.float32)[:, None, None]
        averages /= (x1 - x0).astype(np.float32)[None, :, None]
        return averages[None]

    def crops(self, image_index: np.ndarray, windows: np.ndarray, size: int) -> np.ndarray:
        """Area-resample each window (x0, y0, x1, y1), end-exclusive, of image `image_index[i]` to
        size x size: (N, size, size, 3) float32."""
        x0, y0, x1, y1 = windows.T
        row_start, row_end = _area_bounds((y1 - y0)[:, None], size)
        col_start, col_end = _area_bounds((x1 - x0)[:, None], size)
        row_length = np.array([width + 1 for _, width in self.shapes])[image_index]
        base = self.offsets[image_index] + y0 * row_length + x0

        def lookup(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
            index = (base[:, None] + rows * row_length[:, None])[:, :, None] + cols[:, None, :]
            return np.take(self.buffer, index, axis=0)

        sums = lookup(row_end, col_end) - lookup(row_start, col_end)
        sums -= lookup(row_end, col_start)
        sums += lookup(row_start, col_start)
        crops = sums.astype(np.float32)
        crops /= (row_end - row_start).astype(np.float32)[:, :, None, None]
        crops /= (col_end - col_start).astype(np.float32)[:, None, :, None]
        return crops


def _normalise_(pixels: np.ndarray) -> np.ndarray:
    """Map pixel values to the networks' input range, in place."""
    pixels -= PIXEL_MEAN
    pixels *= PIXEL_SCALE
    return pixels


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square about its centre (facenet-pytorch's `rerec`)."""
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    x1 = boxes[:, 0] + width * 0.5 - side * 0.5
    y1 = boxes[:, 1] + height * 0.5 - side * 0.5
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply R-/O-Net box offsets, which are in units of inclusive box size (+1)."""
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + offsets * np.stack([width, height, width, height], axis=1)


def _crop_windows(boxes: np.ndarray, image_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pixel rectangles (x0, y0, x1, y1), end-exclusive, that facenet-pytorch crops for each box
    (its `pad`: truncated coordinates clipped to the image, no padding), and which are non-empty."""
    corners = np.trunc(boxes).astype(np.int64)
    x0 = np.maximum(corners[:, 0], 1) - 1
    y0 = np.maximum(corners[:, 1], 1) - 1
    x1 = np.minimum(corners[:, 2], image_sizes[:, 1])
    y1 = np.minimum(corners[:, 3], image_sizes[:, 0])
    return np.stack([x0, y0, x1, y1], axis=1), (x1 > x0) & (y1 > y0)


@dataclass(frozen=True)
class _Candidates:
    """Face candidates of a batch of images: boxes (N, 4), scores (N,) and image index (N,)."""

    boxes: np.ndarray
    scores: np.ndarray
    image: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, index: np.ndarray) -> _Candidates:
        return _Candidates(self.boxes[index], self.scores[index], self.image[index])


def _reference(name: str, weights: Path):
    """A network of the torch engine (by its file stem), with its weights."""
    from model.engines.reference import load_state
    from model.faces.networks import mtcnn

    return load_state(getattr(mtcnn, NETWORKS[name])(), weights)


class MTCNN(FaceDetector):
    """Three-stage cascade face detector with five-point landmarks."""

    name = "mtcnn"

    def __init__(
        self,
        weights_dir: Path | str = DEFAULT_WEIGHTS_DIR,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        max_side: int = 1280,
        engine: str = "torch",
        threads: int = 1,
        streams: int = 1,
    ):
        super().__init__(min_face_size, max_side)
        if not 0 < scale_factor < 1 or len(thresholds) != 3:
            raise ValueError("need 0 < scale_factor < 1 and three thresholds")
        weights_dir = Path(weights_dir)
        self.pnet, self.rnet, self.onet = (
            load_network(engine, compiled=weights_dir / compiled,
                         reference=lambda name=name, weights=weights: _reference(name, weights_dir / weights),
                         threads=threads, streams=streams, channels_last=True)
            for name, weights, compiled in zip(NETWORKS, WEIGHTS_FILES, COMPILED_FILES)
        )
        self.engine = engine
        self.thresholds = tuple(thresholds)
        self.scale_factor = scale_factor

    def own_settings(self) -> dict[str, Any]:
        return {"thresholds": list(self.thresholds), "scale_factor": self.scale_factor, "engine": self.engine}

    def detect_working(self, working: Sequence[np.ndarray]) -> list[list[Detection]]:
        tables = _SummedAreaTables(working)
        image_sizes = np.array([image.shape[:2] for image in working])
        candidates = self._propose(tables)
        candidates = self._refine(tables, image_sizes, candidates)
        candidates, landmarks = self._finish(tables, image_sizes, candidates)
        found: list[list[Detection]] = [[] for _ in working]
        for i in np.argsort(-candidates.scores, kind="stable").tolist():
            corners = candidates.boxes[i].astype(np.float64).reshape(2, 2)
            found[int(candidates.image[i])].append(
                (corners, landmarks[i].astype(np.float64), float(candidates.scores[i])))
        return found

    def _scales(self, height: int, width: int) -> list[float]:
        """Pyramid scales: the smallest face maps to P-Net's 12-pixel window, then shrink by
        scale_factor while the short side is still at least one window."""
        scale = PNET_WINDOW / self.min_face_size
        short_side = min(height, width) * scale
        scales = []
        while short_side >= PNET_WINDOW:
            scales.append(scale)
            scale *= self.scale_factor
            short_side *= self.scale_factor
        return scales

    def _propose(self, tables: _SummedAreaTables) -> _Candidates:
        """Stage 1: P-Net over every pyramid level, NMS per level then per image, box regression."""
        boxes = [np.zeros((0, 4), np.float32)]
        scores = [np.zeros(0, np.float32)]
        image = [np.zeros(0, np.int64)]
        for index, (height, width) in enumerate(tables.shapes):
            levels = [
                self._level_candidates(tables, index, scale)
                for scale in self._scales(height, width)
            ]
            if not levels:
                continue
            image_boxes, image_scores, offsets = (np.concatenate(parts) for parts in zip(*levels))
            kept = nms(image_boxes, image_scores, PNET_NMS)
            image_boxes, offsets = image_boxes[kept], offsets[kept]
            # P-Net offsets are in units of the exclusive box size, unlike R- and O-Net's.
            box_width = image_boxes[:, 2] - image_boxes[:, 0]
            box_height = image_boxes[:, 3] - image_boxes[:, 1]
            sizes = np.stack([box_width, box_height, box_width, box_height], axis=1)
            boxes.append(_square(image_boxes + offsets * sizes))
            scores.append(image_scores[kept])
            image.append(np.full(len(kept), index, dtype=np.int64))
        return _Candidates(np.concatenate(boxes), np.concatenate(scores), np.concatenate(image))

    def _level_candidates(
        self, tables: _SummedAreaTables, index: int, scale: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, scores and box offsets of the windows P-Net accepts on one pyramid level, after
        NMS within the level."""
        height, width = tables.shapes[index]
        level = tables.resize(index, int(height * scale + 1), int(width * scale + 1))
        offsets, probability = _pnet_in_strips(self.pnet, _normalise_(level))
        rows, cols = np.nonzero(probability[0] >= self.thresholds[0])
        corner = np.stack([cols, rows], axis=1).astype(np.float32) * PNET_STRIDE
        boxes = np.concatenate([np.floor((corner + 1) / scale), np.floor((corner + PNET_WINDOW) / scale)], axis=1)
        scores = probability[0, rows, cols]
        kept = nms(boxes, scores, PNET_SCALE_NMS)
        return boxes[kept], scores[kept], offsets[0][:, rows, cols].T[kept]

    def _crops(
        self, tables: _SummedAreaTables, image_sizes: np.ndarray, candidates: _Candidates, size: int
    ) -> tuple[_Candidates, np.ndarray]:
        """The candidates whose crop is non-empty, and their crops resampled to size x size."""
        windows, non_empty = _crop_windows(candidates.boxes, image_sizes[candidates.image])
        candidates = candidates.take(non_empty)
        crops = tables.crops(candidates.image, windows[non_empty], size)
        return candidates, _normalise_(crops)

    def _refine(
        self, tables: _SummedAreaTables, image_sizes: np.ndarray, candidates: _Candidates
    ) -> _Candidates:
        """Stage 2: R-Net on all images' candidates in one pass, NMS per image, box regression."""
        candidates, crops = self._crops(tables, image_sizes, candidates, RNET_SIZE)
        if not len(candidates):
            return candidates
        offsets, scores = self.rnet(crops)
        passed = np.flatnonzero(scores > self.thresholds[1])
        candidates = replace(candidates, scores=scores).take(passed)
        kept = nms(candidates.boxes, candidates.scores, RNET_NMS, candidates.image)
        candidates = candidates.take(kept)
        return replace(candidates, boxes=_square(_regress(candidates.boxes, offsets[passed][kept])))

    def _finish(
        self, tables: _SummedAreaTables, image_sizes: np.ndarray, candidates: _Candidates
    ) -> tuple[_Candidates, np.ndarray]:
        """Stage 3: O-Net on all images' candidates in one pass; landmarks (N, 5, 2), box
        regression, then NMS by intersection over the smaller box, per image."""
        candidates, crops = self._crops(tables, image_sizes, candidates, ONET_SIZE)
        if not len(candidates):
            return candidates, np.zeros((0, 5, 2), np.float32)
        offsets, relative_landmarks, scores = self.onet(crops)
        passed = np.flatnonzero(scores > self.thresholds[2])
        candidates = replace(candidates, scores=scores).take(passed)
        boxes = candidates.boxes
        # Landmarks are relative to the (inclusive-size) box O-Net saw, before its regression.
        width = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        height = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        relative_landmarks = relative_landmarks[passed]
        landmarks = np.stack(
            [
                width * relative_landmarks[:, :5] + boxes[:, 0:1] - 1,
                height * relative_landmarks[:, 5:] + boxes[:, 1:2] - 1,
            ],
            axis=2,
        )
        candidates = replace(candidates, boxes=_regress(boxes, offsets[passed]))
        kept = nms(candidates.boxes, candidates.scores, ONET_NMS, candidates.image, True)
        return candidates.take(kept), landmarks[kept]
