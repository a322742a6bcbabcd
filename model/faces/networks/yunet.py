"""YuNet's network (Wu, Peng and Yu, 2023) as OpenCV Zoo's face_detection_yunet_2023mar defines it, whose
weights weights/yunet-2023mar holds (see model/convert/yunet.py). The decoding that turns its maps into
faces is model/faces/yunet.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.faces.yunet import LANDMARKS, STRIDES

FEATURES = 64  # channels of every pyramid level the heads read


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
