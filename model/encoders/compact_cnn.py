"""A compact CNN for training from scratch on a CPU: ~0.9 M parameters, 64x64 chips, 128-d.

VGG-like stages of two 3x3 convolutions (batch norm, PReLU) with max pooling between them, after a
stride-2 stem that halves the cost of everything behind it. The last feature map is pooled by a
learned depthwise filter over the whole map (MobileFaceNet's global depthwise convolution) rather
than averaged: chips are aligned, so where on the face a feature fires carries identity.
"""

from __future__ import annotations

import torch
from torch import nn

from model.encoders.registry import register_encoder

INPUT_MEAN = 127.5
INPUT_SCALE = 1 / 128


def conv_bn_prelu(in_channels: int, channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(channels),
        nn.PReLU(channels),
    )


@register_encoder("compact_cnn")
class CompactCNN(nn.Module):
    """(N, 3, input_size, input_size) RGB chips, 0..255 -> raw (N, embedding_dim) embeddings.

    `widths`: the stem's channels, then each stage's; every stage but the last is followed by 2x2
    max pooling, so input_size must be divisible by 2 ** len(widths).
    """

    input_spec = {"channels": "RGB", "range": "0..255", "mean": [INPUT_MEAN] * 3, "scale": INPUT_SCALE}

    def __init__(
        self,
        embedding_dim: int = 128,
        input_size: int = 64,
        widths: tuple[int, ...] | list[int] = (32, 64, 128, 192),
    ):
        super().__init__()
        if len(widths) < 2 or input_size % 2 ** (len(widths) - 1):
            raise ValueError(f"need 2+ widths and input_size divisible by {2 ** (len(widths) - 1)}")
        layers: list[nn.Module] = [conv_bn_prelu(3, widths[0], stride=2)]
        for index, (in_channels, channels) in enumerate(zip(widths, widths[1:])):
            layers += [conv_bn_prelu(in_channels, channels), conv_bn_prelu(channels, channels)]
            if index < len(widths) - 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        final_size = input_size // 2 ** (len(widths) - 1)
        self.pool = nn.Sequential(
            nn.Conv2d(widths[-1], widths[-1], final_size, groups=widths[-1], bias=False),
            nn.BatchNorm2d(widths[-1]),
        )
        self.embedding = nn.Sequential(nn.Linear(widths[-1], embedding_dim, bias=False), nn.BatchNorm1d(embedding_dim))
        # NHWC, as the dlib encoder: oneDNN skips layout reorders, ~15% faster training on CPU.
        self.to(memory_format=torch.channels_last)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = self.features(((chips - INPUT_MEAN) * INPUT_SCALE).contiguous(memory_format=torch.channels_last))
        return self.embedding(self.pool(x).flatten(1))
