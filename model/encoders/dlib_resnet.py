"""dlib's face ResNet (dlib_face_recognition_resnet_model_v1) re-implemented in PyTorch.

The layer geometry follows dlib's network type exactly, including its quirks (stride-2 convolutions
without padding, and an add that zero-pads mismatched shapes), because the released weights were
trained with them: any deviation costs parity with dlib's descriptors. Weights come from
`python -m model.convert.dlib`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.encoders.registry import register_encoder

# dlib's input_rgb_image_sized<150>: per-channel means subtracted, then divided by 256.
INPUT_MEAN = (122.782, 117.001, 104.298)
INPUT_SCALE = 1 / 256
INPUT_SIZE = 150
EMBEDDING_DIM = 128

# (channels, residual units, whether the first unit downsamples), from the input upwards: dlib's
# alevel4 .. alevel0. Spatial size 35 -> 35 -> 17 -> 8 -> 4 -> 2.
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


def dlib_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: mismatched operands are zero-padded at the end (bottom rows, right columns,
    extra channels) to the larger size in each dimension, never cropped.

    This matters where a downsampling unit's block branch comes out one pixel smaller than its
    pooled shortcut (4x4 vs 3x3, 2x2 vs 1x1) and where the shortcut has fewer channels.
    """
    if a.shape == b.shape:
        return a + b
    _, c, h, w = (max(s, t) for s, t in zip(a.shape, b.shape))
    return _pad_to(a, c, h, w) + _pad_to(b, c, h, w)


def _pad_to(x: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    return F.pad(x, (0, w - x.shape[3], 0, h - x.shape[2], 0, c - x.shape[1]))


class Affine(nn.Module):
    """Per-channel scale and shift: dlib's `affine` layer, batch norm frozen for inference."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


class ResidualUnit(nn.Module):
    """dlib's `ares` (same size) or `ares_down` (halves the size): relu(shortcut(x) + block(x)),
    the add being `dlib_add`.

    The block is conv3x3(stride) -> affine -> relu -> conv3x3 -> affine. dlib gives a convolution
    padding kernel/2 only at stride 1 and none at stride 2, so the downsampling block is unpadded
    (and can come out smaller than the 2x2 average-pooled shortcut; `dlib_add` handles that).
    """

    def __init__(self, in_channels: int, channels: int, downsample: bool):
        super().__init__()
        stride, padding = (2, 0) if downsample else (1, 1)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding)
        self.affine1 = Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.affine2 = Affine(channels)
        self.shortcut = nn.AvgPool2d(2, 2) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        return F.relu(dlib_add(self.shortcut(x), y))


@register_encoder("dlib_resnet")
class DlibResNet(nn.Module):
    """150x150 RGB chip (0..255) -> raw 128-d descriptor, as dlib computes it.

    The output is not L2-normalised (norms are about 1.3-1.65): dlib compares descriptors by
    Euclidean distance with threshold 0.6.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(INPUT_MEAN).view(1, 3, 1, 1))
        # Stem: 150 -> 72 (7x7 stride 2, unpadded as every dlib stride-2 layer) -> 35 (max pool).
        self.conv = nn.Conv2d(3, 32, 7, 2, 0)
        self.affine = Affine(32)
        self.pool = nn.MaxPool2d(3, 2)
        units = []
        in_channels = 32
        for channels, count, downsample in STAGES:
            for i in range(count):
                units.append(ResidualUnit(in_channels, channels, downsample and i == 0))
                in_channels = channels
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(in_channels, EMBEDDING_DIM, bias=False)
        # NHWC activations and filters let oneDNN skip layout reorders: ~30% faster on CPU.
        # load_state_dict copies into these parameters, so the layout survives loading.
        self.to(memory_format=torch.channels_last)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = ((chips - self.mean) * INPUT_SCALE).contiguous(memory_format=torch.channels_last)
        x = self.pool(F.relu(self.affine(self.conv(x))))
        x = self.units(x)
        return self.fc(x.mean((2, 3)))
