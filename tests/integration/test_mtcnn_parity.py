"""Parity with facenet-pytorch's own MTCNN on 100 LFW images (reference/mtcnn_lfw100.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.faces.mtcnn import MTCNN
from tests.integration.reference import detect_in_batches, iou

pytestmark = pytest.mark.data

CONFIDENT = 0.9  # reference faces above this score must all be found
MIN_IOU = 0.95
MAX_LANDMARK_ERROR = 2.0  # pixels, per coordinate
MIN_AGREEING_FRACTION = 0.95
BATCH = 10  # detect several images per call, so the cross-image batching is what gets compared


@pytest.fixture(scope="module")
def reference(data_dir: Path) -> dict:
    return json.loads((data_dir / "reference" / "mtcnn_lfw100.json").read_text())


@pytest.fixture(scope="module")
def detections(reference: dict, data_dir: Path) -> list:
    settings = reference["settings"]
    detector = MTCNN(
        min_face_size=settings["min_face_size"],
        thresholds=tuple(settings["thresholds"]),
        scale_factor=settings["factor"],
    )
    return detect_in_batches(detector, data_dir, [item["image"] for item in reference["images"]], BATCH)


def test_reference_uses_our_landmark_order(reference):
    assert reference["landmark_order"] == [
        "left_eye", "right_eye", "nose", "mouth_left", "mouth_right"
    ]


def test_confident_reference_faces_are_found_with_the_same_box_and_landmarks(
    reference, detections
):
    missing, agreeing, compared, worst = [], 0, 0, (1.0, 0.0)
    for item, faces in zip(reference["images"], detections):
        for expected in item["faces"]:
            if expected["score"] <= CONFIDENT:
                continue
            compared += 1
            match = max(faces, key=lambda face: iou(face.box, expected["box_xyxy"]), default=None)
            if match is None or iou(match.box, expected["box_xyxy"]) < 0.5:
                missing.append(item["image"])
                continue
            overlap = iou(match.box, expected["box_xyxy"])
            error = float(np.abs(np.subtract(match.landmarks, expected["landmarks_xy"])).max())
            worst = (min(worst[0], overlap), max(worst[1], error))
            agreeing += overlap >= MIN_IOU and error <= MAX_LANDMARK_ERROR
    assert compared > 100
    assert not missing, f"reference faces not found in {missing}"
    assert agreeing >= MIN_AGREEING_FRACTION * compared, (
        f"{agreeing}/{compared} agree; worst IoU {worst[0]:.4f}, landmark error {worst[1]:.2f} px"
    )


def test_no_confident_faces_beyond_the_reference(reference, detections):
    for item, faces in zip(reference["images"], detections):
        for face in faces:
            if face.score > CONFIDENT:
                assert any(iou(face.box, ref["box_xyxy"]) >= 0.5 for ref in item["faces"]), (
                    f"extra face {face.box} in {item['image']}"
                )
