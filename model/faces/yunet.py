"""YuNet face detection (Wu, Peng and Yu, 2023) in plain torch, numerically following OpenCV.

The network and weights are OpenCV Zoo's face_detection_yunet_2023mar (weights/yunet-2023mar, see
model/convert_yunet.py), and detection reproduces OpenCV's `cv::FaceDetectorYN`: the image, as BGR
values 0..255 with no mean or scale, zero-padded at the bottom and right to a multiple of 32; one
pass of the network; anchor-free decoding at strides 8, 16 and 32 with the score
sqrt(cls * obj); NMS over boxes truncated to integers. It is re-written rather than run through
OpenCV so that detection needs only torch, batches the images of one call, and bounds the cost
of photo-sized inputs (see `YuNet.detect`).

One pass of one network costs about a third of MTCNN's pyramid and three cascaded networks on a
250x250 image (bench/detect_speed.py). The input is laid out channels-last, which runs these
depthwise convolutions markedly faster on CPU than NCHW; the weights stay float32, as bfloat16
was no faster here and moved landmarks by pixels. Results are (x1, y1, x2, y2) boxes and
landmarks in the input image's pixel coordinates, (0, 0) being the centre of the top-left pixel
as in model/faces/align.py (OpenCV's convention too).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from model.faces.mtcnn import nms
from model.faces.types import Face

DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights" / "yunet-2023mar"
WEIGHTS_FILE = "yunet.pt"

STRIDES = (8, 16, 32)  # the output levels' strides, finest first, as OpenCV decodes them
PAD_MULTIPLE = 32  # the coarsest stride: every level's map then covers the padded input exactly
FEATURES = 64  # channels of every pyramid level the heads read
LANDMARKS = 5
TOP_K = 5000  # candidates per image entering NMS, best first (the reference's FaceDetectorYN top_k)


class DepthwiseUnit(nn.Module):
    """libfacedetection's ConvDPUnit: a 1x1 convolution, then a depthwise 3x3, then ReLU unless it
    ends a head. The batch norm the depthwise convolution was trained with is folded into it."""

    def __init__(self, in_channels: int, out_channels: int, activate: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv2 = nn.Conv2d(
            out_channels, out_channels, kernel_size=3, padding=1, groups=out_channels
        )
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv2(self.conv1(x))
        return torch.relu(x) if self.activate else x


class Stem(nn.Module):
    """A 3x3 stride-2 convolution with ReLU, then one depthwise unit."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1)
        self.conv2 = DepthwiseUnit(16, 16)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(torch.relu(self.conv1(x)))


class Stage(nn.Module):
    """Two depthwise units."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = DepthwiseUnit(in_channels, in_channels)
        self.conv2 = DepthwiseUnit(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x))


class Backbone(nn.Module):
    """Feature maps at strides 8, 16 and 32."""

    def __init__(self) -> None:
        super().__init__()
        self.model0 = Stem()
        self.model1 = Stage(16, 32)
        self.model2 = Stage(32, FEATURES)
        self.model3 = Stage(FEATURES, FEATURES)
        self.model4 = Stage(FEATURES, FEATURES)
        self.model5 = Stage(FEATURES, FEATURES)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.model2(self.model1(F.max_pool2d(self.model0(x), 2)))
        stride8 = self.model3(F.max_pool2d(x, 2))
        stride16 = self.model4(F.max_pool2d(stride8, 2))
        stride32 = self.model5(F.max_pool2d(stride16, 2))
        return stride8, stride16, stride32


class Neck(nn.Module):
    """Top-down pyramid: each coarser level, upsampled (nearest), is added to the finer one."""

    def __init__(self) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(DepthwiseUnit(FEATURES, FEATURES) for _ in STRIDES)

    def forward(self, features: tuple[Tensor, Tensor, Tensor]) -> list[Tensor]:
        levels = [self.lateral_convs[-1](features[-1])]
        for lateral, feature in zip(self.lateral_convs[-2::-1], features[-2::-1]):
            levels.insert(0, lateral(feature + F.interpolate(levels[0], scale_factor=2.0)))
        return levels


class Head(nn.Module):
    """Per level: face class and objectness probabilities, box and landmark offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.multi_level_cls = nn.ModuleList(DepthwiseUnit(FEATURES, 1, False) for _ in STRIDES)
        self.multi_level_bbox = nn.ModuleList(DepthwiseUnit(FEATURES, 4, False) for _ in STRIDES)
        self.multi_level_obj = nn.ModuleList(DepthwiseUnit(FEATURES, 1, False) for _ in STRIDES)
        self.multi_level_kps = nn.ModuleList(
            DepthwiseUnit(FEATURES, 2 * LANDMARKS, False) for _ in STRIDES
        )

    def forward(self, levels: list[Tensor]) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        return [
            (torch.sigmoid(cls(level)), torch.sigmoid(obj(level)), bbox(level), kps(level))
            for level, cls, obj, bbox, kps in zip(
                levels, self.multi_level_cls, self.multi_level_obj, self.multi_level_bbox,
                self.multi_level_kps,
            )
        ]


class YuNetNetwork(nn.Module):
    """The whole network: per stride in STRIDES, the maps (N, C, H / stride, W / stride) of class
    probability (C=1), objectness (C=1), box offsets (C=4: centre x, y in cells, log width, log
    height in strides) and landmark offsets (C=10: x, y in cells per landmark)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.neck = Neck()
        self.bbox_head = Head()

    def forward(self, x: Tensor) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        return self.bbox_head(self.neck(self.backbone(x)))


def _decode(
    levels: list[tuple[Tensor, Tensor, Tensor, Tensor]], score_threshold: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Boxes (N, 4) as (x, y, w, h), landmarks (N, 5, 2), scores (N,) and image index (N,) of
    every cell scoring at least `score_threshold`, in OpenCV's order: stride, then row, then
    column. Float32 arithmetic in OpenCV's order of operations."""
    boxes, landmarks, scores, image = [], [], [], []
    for stride, (cls, obj, bbox, kps) in zip(STRIDES, levels):
        # The sigmoids already lie in [0, 1], so OpenCV's clamp before the product changes nothing.
        score = (cls[:, 0] * obj[:, 0]).sqrt()
        index, rows, cols = (score >= score_threshold).nonzero(as_tuple=True)
        cell = torch.stack([cols, rows], dim=1).float()
        offsets = bbox[index, :, rows, cols]
        centre = (cell + offsets[:, :2]) * stride
        size = offsets[:, 2:].exp() * stride
        boxes.append(torch.cat([centre - size / 2, size], dim=1))
        points = kps[index, :, rows, cols].view(-1, LANDMARKS, 2)
        landmarks.append((points + cell[:, None, :]) * stride)
        scores.append(score[index, rows, cols])
        image.append(index)
    return torch.cat(boxes), torch.cat(landmarks), torch.cat(scores), torch.cat(image)


def _suppress(boxes: Tensor, scores: Tensor, image: Tensor, nms_threshold: float) -> Tensor:
    """Indices kept by OpenCV's NMS within each image, best score first: the TOP_K best candidates
    of each image, compared as integer rectangles (x, y, w, h each truncated towards zero)."""
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(image[order], stable=True)]  # by image, each best first
    first_of_image = torch.searchsorted(image[order], image[order], right=False)
    order = order[torch.arange(len(order)) - first_of_image < TOP_K]
    rectangles = boxes[order].trunc()
    corners = torch.cat([rectangles[:, :2], rectangles[:, :2] + rectangles[:, 2:]], dim=1)
    return order[nms(corners, scores[order], nms_threshold, image[order])]


class YuNet:
    """Single-pass face detector with five-point landmarks; see `detect`.

    Nothing is mutated while detecting, so one instance can serve concurrent requests.
    """

    def __init__(
        self,
        weights_dir: Path | str = DEFAULT_WEIGHTS_DIR,
        min_face_size: int = 20,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_side: int = 640,
    ):
        thresholds_valid = 0 <= score_threshold <= 1 and 0 <= nms_threshold <= 1
        if min_face_size < 1 or max_side < 1 or not thresholds_valid:
            raise ValueError("need min_face_size >= 1, max_side >= 1 and both thresholds in [0, 1]")
        self.network = YuNetNetwork()
        state = torch.load(Path(weights_dir) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        self.network.load_state_dict(state)
        self.network.eval().requires_grad_(False)
        self.min_face_size = min_face_size
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side

    @property
    def settings(self) -> dict[str, Any]:
        """What changes its results: for reports and cache keys."""
        return {"name": "yunet", "min_face_size": self.min_face_size, "score_threshold": self.score_threshold,
                "nms_threshold": self.nms_threshold, "max_side": self.max_side}

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces in each image (uint8 HxWx3 RGB), best score first, in that image's pixels.

        Faces whose box is smaller than `min_face_size` on both sides are left out after NMS, so
        the faces kept are exactly those OpenCV would give. An image whose
        longest side exceeds `max_side` is detected on a copy downscaled to it, and the results
        are scaled back: the network's cost grows with the pixel count, and YuNet finds faces of
        about 10 to 300 pixels, so a face filling a photo is found better at the default 640 (the
        size the network was exported at) too.
        Images whose padded sizes agree go through the network in one batch.
        """
        for image in images:
            if not (
                isinstance(image, np.ndarray)
                and image.dtype == np.uint8
                and image.ndim == 3
                and image.shape[2] == 3
            ):
                raise ValueError("detect() takes uint8 HxWx3 RGB arrays")
        working = [self._working_copy(image) for image in images]
        batches: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(working):
            batches.setdefault(_padded_size(*image.shape[:2]), []).append(index)
        faces: list[list[Face]] = [[] for _ in images]
        with torch.inference_mode():
            for size, indices in batches.items():
                batch = _network_input([working[index] for index in indices], size)
                boxes, landmarks, scores, image = _decode(self.network(batch), self.score_threshold)
                for i in _suppress(boxes, scores, image, self.nms_threshold).tolist():
                    index = indices[int(image[i])]
                    face = _face(boxes[i], landmarks[i], scores[i], images[index], working[index])
                    if max(face.width, face.height) >= self.min_face_size:
                        faces[index].append(face)
        return faces

    def _working_copy(self, image: np.ndarray) -> np.ndarray:
        """The image, or an area-downscaled copy whose longest side is max_side."""
        height, width = image.shape[:2]
        if max(height, width) <= self.max_side:
            return image
        factor = self.max_side / max(height, width)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        copy = Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.Resampling.BOX)
        return np.asarray(copy)


def _padded_size(height: int, width: int) -> tuple[int, int]:
    """Height and width rounded up to a multiple of PAD_MULTIPLE, as OpenCV pads."""
    return tuple(-(-side // PAD_MULTIPLE) * PAD_MULTIPLE for side in (height, width))


def _network_input(images: Sequence[np.ndarray], size: tuple[int, int]) -> Tensor:
    """The images as the network was trained on them (and OpenCV feeds it): BGR values 0..255,
    zero-padded at the bottom and right to `size`. (N, 3, H, W), channels-last in memory: the
    whole network then runs channels-last, its fast layout on CPU."""
    batch = torch.zeros(len(images), *size, 3)
    for slot, image in zip(batch, images):
        slot[: image.shape[0], : image.shape[1]] = torch.from_numpy(image[:, :, ::-1].copy())
    return batch.permute(0, 3, 1, 2)


def _face(
    box: Tensor, landmarks: Tensor, score: Tensor, image: np.ndarray, working: np.ndarray
) -> Face:
    """A Face in `image`'s pixels from a detection in `working`'s. Coordinates are pixel-centre
    based, so a point maps between resolutions as (p + 0.5) * scale - 0.5. OpenCV's landmark order
    (the subject's right eye first, which is the eye on the image's left) is LANDMARK_NAMES'."""
    (height, width), (working_height, working_width) = image.shape[:2], working.shape[:2]
    scale = np.array([width / working_width, height / working_height])
    x, y, w, h = box.double().tolist()
    corners = (np.array([[x, y], [x + w, y + h]]) + 0.5) * scale - 0.5
    points = (landmarks.double().numpy() + 0.5) * scale - 0.5
    return Face(
        box=tuple(float(v) for v in corners.reshape(4)),
        score=float(score),
        landmarks=tuple((float(px), float(py)) for px, py in points),
    )
