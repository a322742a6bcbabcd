"""MTCNN face detection (Zhang et al., 2016) in plain torch, numerically following facenet-pytorch.

The networks (model/faces/networks/mtcnn.py) and weights are facenet-pytorch 2.6.0's (weights/mtcnn,
see model/convert/mtcnn.py), and the cascade reproduces its `detect_face`: the same image pyramid, area resampling, pixel
normalisation, thresholds, NMS passes, box regression and landmark decoding. It is re-written
rather than imported so that detection needs neither torchvision nor OpenCV, runs the R-Net and
O-Net crops of all images in one pass each, and keeps photo-sized inputs fast (`max_side`, see
`FaceDetector.detect` in model/faces/detection.py).

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
import torch
from torch import Tensor

from model.faces.detection import Detection, FaceDetector, load_network, nms, shipped_weights
from model.faces.networks.mtcnn import ONet, PNet, RNet

DEFAULT_WEIGHTS_DIR = shipped_weights("mtcnn")

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


def _pnet_in_strips(pnet: PNet, level: Tensor) -> tuple[Tensor, Tensor]:
    """P-Net over a pyramid level in horizontal strips of up to PNET_STRIP_ROWS output rows.

    Output row i depends only on input rows [2i, 2i + 12), so strips overlapping by 10 input rows
    give the maps of a single pass, while each strip's intermediate maps stay small enough to stay
    in cache and be reused by the allocator: on a 1280x960 photo this takes about a quarter off
    the whole detection.
    """
    output_rows = (level.shape[2] - 1) // 2 - 4  # 3x3 conv, 2x2 ceil-mode pool, two 3x3 convs
    offsets, probabilities = [], []
    for first in range(0, output_rows, PNET_STRIP_ROWS):
        last = min(first + PNET_STRIP_ROWS, output_rows)
        rows = slice(PNET_STRIDE * first, PNET_STRIDE * (last - 1) + PNET_WINDOW)
        strip_offsets, strip_probability = pnet(level[:, :, rows])
        offsets.append(strip_offsets)
        probabilities.append(strip_probability)
    return torch.cat(offsets, dim=2), torch.cat(probabilities, dim=1)


def _area_bounds(length: Tensor | int, size: int) -> tuple[Tensor, Tensor]:
    """Start and end (exclusive) of each of `size` windows over `length` pixels, exactly as torch's
    area interpolation (adaptive average pooling) places them. `length` may be a column tensor."""
    index = torch.arange(size)
    return (index * length) // size, ((index + 1) * length + size - 1) // size


class _SummedAreaTables:
    """Summed-area tables of a batch of uint8 images in one flat buffer.

    Area resampling of any rectangle then costs four lookups per output pixel whatever its size,
    so each pyramid level, and the R-/O-Net crops of all images at once, come out of a few
    vectorised gathers instead of one interpolation per level or per box. The integer sums are
    exact, and dividing by the window height, then its width, in float32 reproduces
    F.interpolate(mode="area") bit for bit.
    """

    def __init__(self, images: Sequence[np.ndarray]):
        self.shapes = [image.shape[:2] for image in images]
        pixels = [(height + 1) * (width + 1) for height, width in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(pixels)[:-1]]).astype(np.int64)
        exact_in_int32 = max(height * width for height, width in self.shapes) * 255 < 2**31
        buffer = np.zeros((sum(pixels), 3), dtype=np.int32 if exact_in_int32 else np.int64)
        for image, offset, size in zip(images, self.offsets, pixels):
            height, width = image.shape[:2]
            interior = buffer[offset : offset + size].reshape(height + 1, width + 1, 3)[1:, 1:]
            interior[...] = image
            # In-place accumulate runs as whole-row additions (np.cumsum along axis 0 is 3x slower).
            np.add.accumulate(interior, axis=0, out=interior)
            np.add.accumulate(interior, axis=1, out=interior)
        self.buffer = torch.from_numpy(buffer)

    def table(self, index: int) -> Tensor:
        height, width = self.shapes[index]
        start = int(self.offsets[index])
        table = self.buffer[start : start + (height + 1) * (width + 1)]
        return table.view(height + 1, width + 1, 3)

    def resize(self, index: int, height: int, width: int) -> Tensor:
        """Image `index` area-resampled to height x width: (1, 3, height, width) channels-last."""
        table = self.table(index)
        y0, y1 = _area_bounds(self.shapes[index][0], height)
        x0, x1 = _area_bounds(self.shapes[index][1], width)
        rows = table.index_select(0, y1).sub_(table.index_select(0, y0))
        sums = rows.index_select(1, x1).sub_(rows.index_select(1, x0))
        averages = sums.float().div_((y1 - y0)[:, None, None]).div_((x1 - x0)[None, :, None])
        return averages.unsqueeze(0).permute(0, 3, 1, 2)

    def crops(self, image_index: Tensor, windows: Tensor, size: int) -> Tensor:
        """Area-resample each window (x0, y0, x1, y1), end-exclusive, of image `image_index[i]` to
        size x size: (N, 3, size, size) channels-last."""
        x0, y0, x1, y1 = windows.unbind(1)
        row_start, row_end = _area_bounds((y1 - y0)[:, None], size)
        col_start, col_end = _area_bounds((x1 - x0)[:, None], size)
        row_length = torch.tensor([width + 1 for _, width in self.shapes])[image_index]
        base = torch.from_numpy(self.offsets)[image_index] + y0 * row_length + x0

        def lookup(rows: Tensor, cols: Tensor) -> Tensor:
            index = (base[:, None] + rows * row_length[:, None])[:, :, None] + cols[:, None, :]
            return self.buffer[index]

        sums = lookup(row_end, col_end).sub_(lookup(row_start, col_end))
        sums.sub_(lookup(row_end, col_start)).add_(lookup(row_start, col_start))
        heights = (row_end - row_start)[:, :, None, None]
        widths = (col_end - col_start)[:, None, :, None]
        return sums.float().div_(heights).div_(widths).permute(0, 3, 1, 2)


def _normalise_(pixels: Tensor) -> Tensor:
    """Map pixel values to the networks' input range, in place."""
    return pixels.sub_(PIXEL_MEAN).mul_(PIXEL_SCALE)


def _square(boxes: Tensor) -> Tensor:
    """Grow each box to a square about its centre (facenet-pytorch's `rerec`)."""
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(width, height)
    x1 = boxes[:, 0] + width * 0.5 - side * 0.5
    y1 = boxes[:, 1] + height * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def _regress(boxes: Tensor, offsets: Tensor) -> Tensor:
    """Apply R-/O-Net box offsets, which are in units of inclusive box size (+1)."""
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + offsets * torch.stack([width, height, width, height], dim=1)


def _crop_windows(boxes: Tensor, image_sizes: Tensor) -> tuple[Tensor, Tensor]:
    """The pixel rectangles (x0, y0, x1, y1), end-exclusive, that facenet-pytorch crops for each box
    (its `pad`: truncated coordinates clipped to the image, no padding), and which are non-empty."""
    corners = boxes.trunc().long()
    x0 = corners[:, 0].clamp(min=1) - 1
    y0 = corners[:, 1].clamp(min=1) - 1
    x1 = torch.minimum(corners[:, 2], image_sizes[:, 1])
    y1 = torch.minimum(corners[:, 3], image_sizes[:, 0])
    return torch.stack([x0, y0, x1, y1], dim=1), (x1 > x0) & (y1 > y0)


@dataclass(frozen=True)
class _Candidates:
    """Face candidates of a batch of images: boxes (N, 4), scores (N,) and image index (N,)."""

    boxes: Tensor
    scores: Tensor
    image: Tensor

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, index: Tensor) -> _Candidates:
        return _Candidates(self.boxes[index], self.scores[index], self.image[index])


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
    ):
        super().__init__(min_face_size, max_side)
        if not 0 < scale_factor < 1 or len(thresholds) != 3:
            raise ValueError("need 0 < scale_factor < 1 and three thresholds")
        weights_dir = Path(weights_dir)
        self.pnet = load_network(PNet(), weights_dir / "pnet.pt")
        self.rnet = load_network(RNet(), weights_dir / "rnet.pt")
        self.onet = load_network(ONet(), weights_dir / "onet.pt")
        self.thresholds = tuple(thresholds)
        self.scale_factor = scale_factor

    def own_settings(self) -> dict[str, Any]:
        return {"thresholds": list(self.thresholds), "scale_factor": self.scale_factor}

    def detect_working(self, working: Sequence[np.ndarray]) -> list[list[Detection]]:
        tables = _SummedAreaTables(working)
        image_sizes = torch.tensor([image.shape[:2] for image in working])
        candidates = self._propose(tables)
        candidates = self._refine(tables, image_sizes, candidates)
        candidates, landmarks = self._finish(tables, image_sizes, candidates)
        found: list[list[Detection]] = [[] for _ in working]
        for i in torch.argsort(candidates.scores, descending=True, stable=True).tolist():
            corners = candidates.boxes[i].double().numpy().reshape(2, 2)
            found[int(candidates.image[i])].append((corners, landmarks[i].double().numpy(), float(candidates.scores[i])))
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
        boxes, scores, image = [torch.zeros(0, 4)], [torch.zeros(0)], [torch.zeros(0).long()]
        for index, (height, width) in enumerate(tables.shapes):
            levels = [
                self._level_candidates(tables, index, scale)
                for scale in self._scales(height, width)
            ]
            if not levels:
                continue
            image_boxes, image_scores, offsets = (torch.cat(parts) for parts in zip(*levels))
            kept = nms(image_boxes, image_scores, PNET_NMS)
            image_boxes, offsets = image_boxes[kept], offsets[kept]
            # P-Net offsets are in units of the exclusive box size, unlike R- and O-Net's.
            box_width = image_boxes[:, 2] - image_boxes[:, 0]
            box_height = image_boxes[:, 3] - image_boxes[:, 1]
            sizes = torch.stack([box_width, box_height, box_width, box_height], dim=1)
            boxes.append(_square(image_boxes + offsets * sizes))
            scores.append(image_scores[kept])
            image.append(torch.full((len(kept),), index, dtype=torch.long))
        return _Candidates(torch.cat(boxes), torch.cat(scores), torch.cat(image))

    def _level_candidates(
        self, tables: _SummedAreaTables, index: int, scale: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Boxes, scores and box offsets of the windows P-Net accepts on one pyramid level, after
        NMS within the level."""
        height, width = tables.shapes[index]
        level = tables.resize(index, int(height * scale + 1), int(width * scale + 1))
        offsets, probability = _pnet_in_strips(self.pnet, _normalise_(level))
        rows, cols = (probability[0] >= self.thresholds[0]).nonzero(as_tuple=True)
        corner = torch.stack([cols, rows], dim=1).float() * PNET_STRIDE
        boxes = torch.cat(
            [((corner + 1) / scale).floor(), ((corner + PNET_WINDOW) / scale).floor()], dim=1
        )
        scores = probability[0, rows, cols]
        kept = nms(boxes, scores, PNET_SCALE_NMS)
        return boxes[kept], scores[kept], offsets[0][:, rows, cols].T[kept]

    def _crops(
        self, tables: _SummedAreaTables, image_sizes: Tensor, candidates: _Candidates, size: int
    ) -> tuple[_Candidates, Tensor]:
        """The candidates whose crop is non-empty, and their crops resampled to size x size."""
        windows, non_empty = _crop_windows(candidates.boxes, image_sizes[candidates.image])
        candidates = candidates.take(non_empty)
        crops = tables.crops(candidates.image, windows[non_empty], size)
        return candidates, _normalise_(crops)

    def _refine(
        self, tables: _SummedAreaTables, image_sizes: Tensor, candidates: _Candidates
    ) -> _Candidates:
        """Stage 2: R-Net on all images' candidates in one pass, NMS per image, box regression."""
        candidates, crops = self._crops(tables, image_sizes, candidates, RNET_SIZE)
        if not len(candidates):
            return candidates
        offsets, scores = self.rnet(crops)
        passed = (scores > self.thresholds[1]).nonzero().squeeze(1)
        candidates = replace(candidates, scores=scores).take(passed)
        kept = nms(candidates.boxes, candidates.scores, RNET_NMS, candidates.image)
        candidates = candidates.take(kept)
        return replace(candidates, boxes=_square(_regress(candidates.boxes, offsets[passed][kept])))

    def _finish(
        self, tables: _SummedAreaTables, image_sizes: Tensor, candidates: _Candidates
    ) -> tuple[_Candidates, Tensor]:
        """Stage 3: O-Net on all images' candidates in one pass; landmarks (N, 5, 2), box
        regression, then NMS by intersection over the smaller box, per image."""
        candidates, crops = self._crops(tables, image_sizes, candidates, ONET_SIZE)
        if not len(candidates):
            return candidates, torch.zeros(0, 5, 2)
        offsets, relative_landmarks, scores = self.onet(crops)
        passed = (scores > self.thresholds[2]).nonzero().squeeze(1)
        candidates = replace(candidates, scores=scores).take(passed)
        boxes = candidates.boxes
        # Landmarks are relative to the (inclusive-size) box O-Net saw, before its regression.
        width = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        height = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        relative_landmarks = relative_landmarks[passed]
        landmarks = torch.stack(
            [
                width * relative_landmarks[:, :5] + boxes[:, 0:1] - 1,
                height * relative_landmarks[:, 5:] + boxes[:, 1:2] - 1,
            ],
            dim=2,
        )
        candidates = replace(candidates, boxes=_regress(boxes, offsets[passed]))
        kept = nms(candidates.boxes, candidates.scores, ONET_NMS, candidates.image, True)
        return candidates.take(kept), landmarks[kept]
