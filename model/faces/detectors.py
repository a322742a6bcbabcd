"""Face detectors by name, and one detector backed by another where it finds nothing.

A card names the detector its alignment templates were fitted to (`detector`), because detectors
place the five landmarks differently: YuNet's mouth corners sit about 0.07 eye-distances above
MTCNN's. "yunet+mtcnn" is YuNet, three times faster, with MTCNN run only on the images where
YuNet found no face.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from model.faces.detection import FaceDetector
from model.faces.mtcnn import MTCNN
from model.faces.yunet import YuNet
from model.paths import WEIGHTS_DIR
from model.types import Face, detector_parts

# Detector name -> (class, its weights folder under the detectors' folder).
DETECTORS: dict[str, tuple[type[FaceDetector], str]] = {"mtcnn": (MTCNN, "mtcnn"), "yunet": (YuNet, "yunet-2023mar")}


class Detector(Protocol):
    max_side: int  # the longest image side it looks at: larger images are detected downscaled to it
    first_side: int | None  # the side it looks at first, where it has such a look

    def detect(self, images: Sequence[np.ndarray], every_face: bool = False) -> list[list[Face]]: ...

    def warm_up(self) -> None: ...

    @property
    def settings(self) -> dict[str, Any]: ...


class FallbackDetector:
    """`primary` on every image; `fallback` only on the images where `primary` found no face."""

    def __init__(self, primary: Detector, fallback: Detector):
        self.primary = primary
        self.fallback = fallback
        # Images are decoded as finely as the primary looks (model.images.decode_photo): the fallback
        # runs on few of them, and decoding every large JPEG twice as finely for it cost more than it ran.
        self.max_side = primary.max_side
        self.first_side = primary.first_side

    @property
    def settings(self) -> dict[str, Any]:
        return {"primary": self.primary.settings, "fallback": self.fallback.settings}

    def warm_up(self) -> None:
        self.primary.warm_up()
        self.fallback.warm_up()

    def detect(self, images: Sequence[np.ndarray], every_face: bool = False) -> list[list[Face]]:
        found = self.primary.detect(images, every_face)
        missed = [index for index, faces in enumerate(found) if not faces]
        if missed:
            for index, faces in zip(missed, self.fallback.detect([images[i] for i in missed], every_face)):
                found[index] = faces
        return found


def build_detector(
    name: str,
    detectors_dir: str | Path = WEIGHTS_DIR,
    min_face_size: int = 20,
    engine: str = "torch",
    threads: int = 1,
    streams: int = 1,
) -> Detector:
    """The detector `name` names (e.g. "yunet+mtcnn"), its networks on `engine`."""
    built = []
    for part in detector_parts(name):
        cls, folder = DETECTORS[part]
        built.append(cls(weights_dir=Path(detectors_dir) / folder, min_face_size=min_face_size, engine=engine,
                         threads=threads, streams=streams))
    return built[0] if len(built) == 1 else FallbackDetector(*built)
