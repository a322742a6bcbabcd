"""SFace (OpenCV Zoo's face_recognition_sface_2021dec) re-implemented in PyTorch.

A MobileNet-v1-like stack: a 3x3 convolution, then thirteen depthwise 3x3 + pointwise 1x1 pairs,
each convolution followed by batch norm and PReLU; then batch norm, flatten and a fully connected
layer to 128 with a final batch norm. Every batch norm is folded into the layer next to it by
`python -m model.convert.sface`, so only convolutions, PReLUs and one linear layer remain. Module
names follow the ONNX graph's (conv_2_dw, conv_2, ...), which keeps the conversion readable.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from model.encoders.registry import register_encoder

# The graph's own first two ops: (x - 127.5) * 0.0078125, i.e. 0..255 -> [-1, 1).
INPUT_MEAN = 127.5
INPUT_SCALE = 0.0078125
INPUT_SIZE = 112
EMBEDDING_DIM = 128
STEM_CHANNELS = 32

# Depthwise + pointwise pairs conv_2 .. conv_14: (pointwise output channels, depthwise stride).
# Spatial size 112 -> 56 (conv_3) -> 28 (conv_5) -> 14 (conv_7) -> 7 (conv_13).
BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
FINAL_SIZE = INPUT_SIZE // 2 ** sum(stride == 2 for _, stride in BLOCKS)

# Chips per pass. The 112x112 layers read and write about 5 MB of activations per chip, so a large
# batch in one pass spills out of the CPU caches. On 2 threads with a 32 MiB L3, batch 32 took
# 8-12 ms/chip in one pass, about 4.5 in passes of 4, and 4-7 (erratic) in passes of 8.
CHUNK = 4


def conv_prelu(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Convolution (its bias holds the folded batch norm) then PReLU; 3x3 kernels pad by 1."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups)
    return nn.Sequential(OrderedDict(conv=conv, prelu=nn.PReLU(out_channels)))


@register_encoder("sface")
class SFace(nn.Module):
    """112x112 RGB chip (0..255) -> raw 128-d embedding, as OpenCV's FaceRecognizerSF computes it.

    The output is not L2-normalised (norms are about 9-14); OpenCV compares by cosine similarity.
    """

    def __init__(self):
        super().__init__()
        layers = OrderedDict(conv_1=conv_prelu(3, STEM_CHANNELS, 3))
        channels = STEM_CHANNELS
        for index, (out_channels, stride) in enumerate(BLOCKS, start=2):
            layers[f"conv_{index}_dw"] = conv_prelu(channels, channels, 3, stride, groups=channels)
            layers[f"conv_{index}"] = conv_prelu(channels, out_channels, 1)
            channels = out_channels
        self.layers = nn.Sequential(layers)
        # bn1 (before it) and fc1 (after it) are folded into this layer's weight and bias.
        self.fc = nn.Linear(channels * FINAL_SIZE * FINAL_SIZE, EMBEDDING_DIM)
        # NHWC activations and filters let oneDNN skip layout reorders: about 13% faster here at
        # batch 32, on a par at batch 1. load_state_dict copies into these parameters, keeping it.
        self.to(memory_format=torch.channels_last)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._embed(part) for part in chips.split(CHUNK)])

    def _embed(self, chips: torch.Tensor) -> torch.Tensor:
        x = ((chips - INPUT_MEAN) * INPUT_SCALE).contiguous(memory_format=torch.channels_last)
        # flatten() reads in logical NCHW order whatever the memory layout, as the graph's Flatten.
        return self.fc(self.layers(x).flatten(1))
