"""YuNet face detection (Wu, Peng and Yu, 2023), re-implemented, numerically following OpenCV.

The network (model/faces/networks/yunet.py) and weights are OpenCV Zoo's
face_detection_yunet_2023mar (weights/yunet-2023mar, see model/convert/yunet.py), and detection
reproduces OpenCV's `cv::FaceDetectorYN`: the image, as BGR values 0..255 with no mean or scale,
zero-padded at the bottom and right (OpenCV pads to a multiple of 32; here into the
smallest of a fixed set of canvases, see CANVASES); one pass of the network; anchor-free
decoding at strides 8, 16 and 32 with the score sqrt(cls * obj); NMS over boxes truncated to
integers. It is re-written rather than run through OpenCV so that
its network runs on torch or, compiled, on OpenVINO (the engines the encoders run on), batches the
images of one call, and bounds the cost of photo-sized inputs (`max_side`, see
`FaceDetector.detect` in model/faces/detection.py).

One pass of one network costs about a third of MTCNN's pyramid and three cascaded networks on a
250x250 image (python -m bench.detect_speed). The input is laid out channels-last, which runs these
depthwise convolutions markedly faster on CPU than NCHW; the weights stay float32, as bfloat16
was no faster here and moved landmarks by pixels. On the openvino engine the same network runs
compiled (about six times faster at 256x256 on the 2-core CPU here), with the same decoding. Results are (x1, y1, x2, y2) boxes and
landmarks in the input image's pixel coordinates, (0, 0) being the centre of the top-left pixel
as in model/faces/align.py (OpenCV's convention too); OpenCV's landmark order (the subject's right
eye first, which is the eye on the image's left) is LANDMARK_NAMES'.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.engines.compile import load_network
from model.faces.detection import Detection, FaceDetector, nms, shipped_weights

STRIDES = (8, 16, 32)  # the output levels' strides, finest first, as OpenCV decodes them
LANDMARKS = 5
DEFAULT_WEIGHTS_DIR = shipped_weights("yunet-2023mar")
WEIGHTS_FILE = "yunet.pt"
# The same network as an OpenVINO model, which the converter writes beside the weights, so that the
# openvino engine loads it as it is (converting at start-up would take 1.5 s, 140 MiB and torch).
COMPILED_FILE = "yunet.xml"
# What a traced network is shown: one padded image; batch, height and width stay free.
EXAMPLE_INPUT = (1, 3, 128, 128)
DYNAMIC_AXES = ((0, 2, 3),)
MAPS_PER_STRIDE = 4  # the network's outputs per stride: class, objectness, box, landmarks

PAD_MULTIPLE = 32  # the coarsest stride: every level's map then covers the padded input exactly
# The only input shapes (height, width) the network is given: each image is zero-padded at the bottom
# and right to the smallest that holds it, at each look's side (model/faces/detection.py). OpenCV pads
# to the next multiple of 32 instead, but every new shape costs the CPU plugin tens of milliseconds to
# prepare and a few MiB it keeps, so photos of a thousand sizes held a thousand shapes and memory
# climbed past a pod's limit; a fixed set keeps both bounded, and the padding adds only zeros.
CANVASES = (
    (256, 256), (320, 320), (256, 320), (320, 256), (192, 320), (320, 192),  # the first look (320)
    (640, 640), (480, 640), (640, 480), (384, 640), (640, 384),  # the full look (640)
)
TOP_K = 5000  # candidates per image entering NMS, best first (the reference's FaceDetectorYN top_k)


def _decode(
    levels: list[list[np.ndarray]], score_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N, 4) as (x, y, w, h), landmarks (N, 5, 2), scores (N,) and image index (N,) of
    every cell scoring at least `score_threshold`, in OpenCV's order: stride, then row, then
    column. Float32 arithmetic in OpenCV's order of operations, in NumPy: a handful of small
    operations per level, which cost a fraction of torch's."""
    boxes, landmarks, scores, image = [], [], [], []
    for stride, maps in zip(STRIDES, levels):
        cls, obj, bbox, kps = maps
        # The sigmoids already lie in [0, 1], so OpenCV's clamp before the product changes nothing.
        score = np.sqrt(cls[:, 0] * obj[:, 0])
        index, rows, cols = np.nonzero(score >= score_threshold)
        cell = np.stack([cols, rows], axis=1).astype(np.float32)
        offsets = bbox[index, :, rows, cols]
        centre = (cell + offsets[:, :2]) * np.float32(stride)
        size = np.exp(offsets[:, 2:]) * np.float32(stride)
        boxes.append(np.concatenate([centre - size / np.float32(2), size], axis=1))
        points = kps[index, :, rows, cols].reshape(-1, LANDMARKS, 2)
        landmarks.append((points + cell[:, None, :]) * np.float32(stride))
        scores.append(score[index, rows, cols])
        image.append(index)
    return np.concatenate(boxes), np.concatenate(landmarks), np.concatenate(scores), np.concatenate(image)


def _suppress(boxes: np.ndarray, scores: np.ndarray, image: np.ndarray, nms_threshold: float) -> np.ndarray:
    """Indices kept by OpenCV's NMS within each image, best score first: the TOP_K best candidates
    of each image, compared as integer rectangles (x, y, w, h each truncated towards zero)."""
    order = np.argsort(-scores, kind="stable")
    order = order[np.argsort(image[order], kind="stable")]  # by image, each best first
    first_of_image = np.searchsorted(image[order], image[order], side="left")
    order = order[np.arange(len(order)) - first_of_image < TOP_K]
    rectangles = np.trunc(boxes[order])
    corners = np.concatenate([rectangles[:, :2], rectangles[:, :2] + rectangles[:, 2:]], axis=1)
    return order[nms(corners, scores[order], nms_threshold, image[order])]


class YuNet(FaceDetector):
    """Single-pass face detector with five-point landmarks.

    Faces whose box is smaller than `min_face_size` on both sides are left out after NMS, so the
    faces kept are exactly those OpenCV would give. The working copy's longest side is at most
    `max_side`: the network's cost grows with the pixel count, and YuNet finds faces of about 10 to
    300 pixels, so a face filling a photo is found better at the default 640 (the size the network
    was exported at) too. Images whose canvases agree go through the network in one batch.
    """

    name = "yunet"
    drops_small_faces = True

    def __init__(
        self,
        weights_dir: Path | str = DEFAULT_WEIGHTS_DIR,
        min_face_size: int = 20,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_side: int = 640,
        first_side: int | None = 320,
        engine: str = "torch",
        threads: int = 1,
        streams: int = 1,
    ):
        super().__init__(min_face_size, max_side, first_side)
        if not (0 <= score_threshold <= 1 and 0 <= nms_threshold <= 1):
            raise ValueError("need both thresholds in [0, 1]")
        # float32 on every engine: bfloat16 was no faster here and moved landmarks by pixels.
        # Either engine takes the padded uint8 images as they are: the network's own input (BGR,
        # float32, as OpenCV feeds it) is made in the compiled graph, or by TorchNetwork.
        weights_dir = Path(weights_dir)
        self.network = load_network(engine, compiled=weights_dir / COMPILED_FILE,
                                    reference=lambda: _reference(weights_dir / WEIGHTS_FILE), threads=threads,
                                    streams=streams, image_channels="BGR")
        self.engine = engine
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold

    def own_settings(self) -> dict[str, Any]:
        return {"score_threshold": self.score_threshold, "nms_threshold": self.nms_threshold, "engine": self.engine}

    def detect_working(self, working: Sequence[np.ndarray]) -> list[list[Detection]]:
        batches: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(working):
            batches.setdefault(_canvas(*image.shape[:2]), []).append(index)
        found: list[list[Detection]] = [[] for _ in working]
        for size, indices in batches.items():
            batch = _padded([working[index] for index in indices], size)
            boxes, landmarks, scores, image = _decode(self._levels(batch), self.score_threshold)
            for i in _suppress(boxes, scores, image, self.nms_threshold).tolist():
                x, y, w, h = boxes[i].astype(np.float64)
                corners = np.array([[x, y], [x + w, y + h]])
                found[indices[int(image[i])]].append((corners, landmarks[i].astype(np.float64), float(scores[i])))
        return found

    def warm_up(self) -> None:
        """The network run once on each canvas of the first look, so that no request for a photo's
        main face prepares a shape. The full look's canvases, which need the most working memory,
        are prepared by the first request that looks there (once each)."""
        for canvas in CANVASES:
            if max(canvas) <= (self.first_side or self.max_side):
                self.network(np.zeros((1, *canvas, 3), np.uint8))

    def _levels(self, batch: np.ndarray) -> list[list[np.ndarray]]:
        """The network's maps per stride, (class, objectness, box, landmarks), for padded images."""
        flat = self.network(batch)
        return [flat[start : start + MAPS_PER_STRIDE] for start in range(0, len(flat), MAPS_PER_STRIDE)]


def _reference(weights: Path):
    """The torch network with its weights (the torch engine's; channels-last in memory, its fast
    layout on CPU, as TorchNetwork hands it images)."""
    from model.engines.reference import load_state
    from model.faces.networks.yunet import YuNetNetwork

    return load_state(YuNetNetwork(), weights)


def _canvas(height: int, width: int) -> tuple[int, int]:
    """The smallest of CANVASES (by area) that holds an image of this size; for an image larger than
    any (a detector with a larger max_side), its sides rounded up to a multiple of PAD_MULTIPLE."""
    holding = [canvas for canvas in CANVASES if canvas[0] >= height and canvas[1] >= width]
    if not holding:
        return tuple(-(-side // PAD_MULTIPLE) * PAD_MULTIPLE for side in (height, width))
    return min(holding, key=lambda canvas: (canvas[0] * canvas[1], canvas))


def _padded(images: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """The images (uint8 RGB) zero-padded at the bottom and right to `size`, as OpenCV pads:
    (N, H, W, 3) uint8."""
    batch = np.zeros((len(images), *size, 3), dtype=np.uint8)
    for slot, image in zip(batch, images):
        slot[: image.shape[0], : image.shape[1]] = image
    return batch
