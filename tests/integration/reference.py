"""The reference outputs in ../shared/data/reference (what dlib, OpenCV and facenet-pytorch computed on
LFW images), read once and compared with the same rules by every parity test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.faces.align import similarity_transform
from model.faces.detection import FaceDetector
from model.images import load_image, to_array
from model.types import AlignmentTemplate, Face


def iou(a, b) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes: the oracle, apart from the code under test."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union


def detect_in_batches(detector: FaceDetector, data_dir: Path, names: list[str], batch: int) -> list[list[Face]]:
    """The faces in each named image, several images per call, so the batched pass is what is compared."""
    images = [to_array(load_image(data_dir / name)) for name in names]
    return [faces for start in range(0, len(images), batch) for faces in detector.detect(images[start : start + batch])]


@dataclass(frozen=True)
class EncoderComparison:
    """The reference's aligned chips (float NCHW RGB, 0..255), our embeddings of them and its own."""

    chips: torch.Tensor
    ours: np.ndarray
    theirs: np.ndarray


@torch.inference_mode()
def compare_with_reference(encoder: torch.nn.Module, data_dir: Path, folder: str) -> EncoderComparison:
    reference = data_dir / "reference" / folder
    chips = torch.from_numpy(np.load(reference / "chips.npy")).permute(0, 3, 1, 2).float()  # stored uint8 NHWC
    return EncoderComparison(chips, encoder(chips).numpy(), np.load(reference / "embeddings.npy"))


@torch.inference_mode()
def batch_of_one_difference(encoder: torch.nn.Module, chips: torch.Tensor) -> float:
    """The largest difference between the chips' embeddings in one batch and one at a time."""
    single = torch.cat([encoder(chip[None]) for chip in chips])
    return float((encoder(chips) - single).abs().max())


def grid_sample_chips(image: np.ndarray, faces: list[Face], template: AlignmentTemplate) -> np.ndarray:
    """Chips as torch's grid_sample aligns them (bilinear, zeros outside, float64), over the whole
    image: the reference for model.faces.align on faces under twice the chip's scale (no
    box-averaging), as LFW's are."""
    import torch.nn.functional as F

    height, width = image.shape[:2]
    pixels = torch.from_numpy(image.astype(np.float64)).permute(2, 0, 1)[None]
    steps = np.arange(template.size, dtype=np.float64)
    u, v = np.meshgrid(steps, steps)
    chips = []
    for face in faces:
        to_chip = similarity_transform(face.landmarks, template.points, template.weights)
        chip_to_image = np.linalg.inv(np.vstack([to_chip, [0, 0, 1]]))[:2]
        assert abs(np.linalg.det(chip_to_image[:, :2])) < 4, "a face this large is box-averaged first"
        x, y = (row[0] * u + row[1] * v + row[2] for row in chip_to_image)
        grid = np.stack([(2 * x + 1) / width - 1, (2 * y + 1) / height - 1], axis=-1)
        chip = F.grid_sample(pixels, torch.from_numpy(grid[None]), mode="bilinear", padding_mode="zeros",
                             align_corners=False)
        chips.append(chip[0].float().numpy())
    return np.stack(chips)
