"""MTCNN's three networks (Zhang et al., 2016) as facenet-pytorch 2.6.0 defines them, whose weights
weights/mtcnn holds (see model/convert/mtcnn.py). The cascade that runs them is model/faces/mtcnn.py.

Each is a stack of convolution + PReLU (+ max pooling) stages, then heads. The stages are built from
a table, under the weight files' own names (conv1, prelu1, pool1, ...).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# A stage: (input channels, output channels, convolution kernel, max-pooling (kernel, stride) or None).
Stage = tuple[int, int, int, tuple[int, int] | None]


class _Stages(nn.Module):
    """conv{i} -> prelu{i} (-> pool{i}) for each stage i = 1, 2, ...; pools round up (ceil mode)."""

    def __init__(self, stages: tuple[Stage, ...]):
        super().__init__()
        self.count = len(stages)
        for index, (in_channels, channels, kernel, pool) in enumerate(stages, start=1):
            self.add_module(f"conv{index}", nn.Conv2d(in_channels, channels, kernel_size=kernel))
            self.add_module(f"prelu{index}", nn.PReLU(channels))
            if pool:
                self.add_module(f"pool{index}", nn.MaxPool2d(*pool, ceil_mode=True))

    def stages(self, x: Tensor) -> Tensor:
        for index in range(1, self.count + 1):
            x = getattr(self, f"prelu{index}")(getattr(self, f"conv{index}")(x))
            pool = getattr(self, f"pool{index}", None)
            x = pool(x) if pool is not None else x
        return x


def _flatten(x: Tensor) -> Tensor:
    """The dense weights were converted from a (W, H, C) flattening."""
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(_Stages):
    """Proposal network: fully convolutional, so one pass scores every 12x12 window of a level."""

    def __init__(self) -> None:
        super().__init__(((3, 10, 3, (2, 2)), (10, 16, 3, None), (16, 32, 3, None)))
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Box offsets (N, 4, h, w) and face probability (N, h, w) of every window."""
        x = self.stages(x)
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)[:, 1]


class RNet(_Stages):
    """Refinement network: re-scores and re-fits each proposal from a 24x24 crop."""

    def __init__(self) -> None:
        super().__init__(((3, 28, 3, (3, 2)), (28, 48, 3, (3, 2)), (48, 64, 2, None)))
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Box offsets (N, 4) and face probability (N,)."""
        x = self.prelu4(self.dense4(_flatten(self.stages(x))))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class ONet(_Stages):
    """Output network: final score, box and five landmarks from a 48x48 crop."""

    def __init__(self) -> None:
        super().__init__(((3, 32, 3, (3, 2)), (32, 64, 3, (3, 2)), (64, 64, 3, (2, 2)), (64, 128, 2, None)))
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Box offsets (N, 4), landmarks (N, 10: five x then five y, relative to the box) and face
        probability (N,)."""
        x = self.prelu5(self.dense5(_flatten(self.stages(x))))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)[:, 1]
