"""Detection on real LFW faces and synthetic edge cases: blank, tiny, huge, EXIF-rotated,
greyscale, cut by the image border, and several images per call."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.faces.mtcnn import MTCNN
from model.images import decode_image, load_image, to_array
from model.types import Face
from tests.integration.reference import iou

EXIF_ORIENTATION = 0x0112
ROTATED_90_CLOCKWISE = 6  # the stored pixels must be turned 90 degrees clockwise for display
FACE_IMAGE = "Michael_Kostelnik/Michael_Kostelnik_0001.jpg"


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    return MTCNN()


@pytest.fixture(scope="module")
def face_path(lfw_dir: Path) -> Path:
    return lfw_dir / "images" / FACE_IMAGE


@pytest.fixture(scope="module")
def face_image(face_path: Path) -> np.ndarray:
    return to_array(load_image(face_path))


@pytest.fixture(scope="module")
def face(detector: MTCNN, face_image: np.ndarray) -> Face:
    faces = detector.detect([face_image])[0]
    assert len(faces) == 1 and faces[0].score > 0.99
    return faces[0]


def landmark_error(a: Face, b: Face, offset=(0.0, 0.0)) -> float:
    return float(np.abs(np.subtract(a.landmarks, np.add(b.landmarks, offset))).max())


def test_blank_image_has_no_face(detector):
    assert detector.detect([np.full((480, 640, 3), 128, dtype=np.uint8)]) == [[]]


@pytest.mark.parametrize("shape", [(1, 1, 3), (8, 8, 3), (19, 300, 3)])
def test_images_too_small_for_the_smallest_face_give_no_face(detector, shape):
    assert detector.detect([np.zeros(shape, dtype=np.uint8)]) == [[]]


@pytest.mark.data
def test_landmarks_lie_inside_the_box_in_order(face):
    x1, y1, x2, y2 = face.box
    assert all(x1 < x < x2 and y1 < y < y2 for x, y in face.landmarks)
    (left_eye, right_eye, nose, mouth_left, mouth_right) = face.landmarks
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


@pytest.mark.data
def test_huge_photo_is_detected_downscaled_and_mapped_back(detector, face_image, face):
    # A 4000x3000 photo goes through a 1280x960 copy, where this 250 px face is 80 px.
    canvas = np.full((3000, 4000, 3), 90, dtype=np.uint8)
    x0, y0 = 2100, 1300
    canvas[y0 : y0 + 250, x0 : x0 + 250] = face_image
    [found] = detector.detect([canvas])[0]
    assert iou(found.box, np.add(face.box, (x0, y0, x0, y0))) > 0.85
    assert landmark_error(found, face, offset=(x0, y0)) < 8.0  # about 2.5 px in the copy


@pytest.mark.data
def test_exif_rotated_photo_is_detected_upright(detector, face_path, face):
    stored = Image.open(face_path).transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATED_90_CLOCKWISE
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif)
    upright = to_array(decode_image(buffer.getvalue()))
    [found] = detector.detect([upright])[0]
    assert iou(found.box, face.box) > 0.95
    assert landmark_error(found, face) < 2.0


@pytest.mark.data
def test_greyscale_photo(detector, face_path, face):
    buffer = io.BytesIO()
    Image.open(face_path).convert("L").save(buffer, "PNG")
    grey = to_array(decode_image(buffer.getvalue()))
    [found] = detector.detect([grey])[0]
    assert found.score > 0.99
    assert iou(found.box, face.box) > 0.9


@pytest.mark.data
def test_face_cut_by_the_border(detector, face_image, face):
    # A fifth of the face cut off on the left: still found, with a box reaching past the edge.
    cut = int(face.box[0] + 0.2 * face.width)
    [found] = detector.detect([np.ascontiguousarray(face_image[:, cut:])])[0]
    assert found.box[0] < 0 < found.box[2]
    assert found.landmarks[1][0] > 0  # the right eye is still in the picture
    # Cut through the middle of the face: nothing is found (and nothing breaks).
    half = int((face.box[0] + face.box[2]) / 2)
    assert detector.detect([np.ascontiguousarray(face_image[:, half:])]) == [[]]


@pytest.mark.data
def test_several_images_per_call_give_the_same_faces_as_one_by_one(detector, lfw_dir):
    paths = sorted((lfw_dir / "images").glob("A*/*_0001.jpg"))[:4]
    images = [to_array(load_image(path)) for path in paths]
    images.append(np.ascontiguousarray(images[0][20:230, 10:240]))  # a different size
    images.append(np.zeros((8, 8, 3), dtype=np.uint8))
    batched = detector.detect(images)
    assert len(batched) == len(images)
    # Equal up to float rounding: R-/O-Net batch sizes change the order of float operations.
    for faces, image in zip(batched, images):
        alone = detector.detect([image])[0]
        assert len(faces) == len(alone)
        for a, b in zip(faces, alone):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
            assert a.score == pytest.approx(b.score, abs=1e-5)
