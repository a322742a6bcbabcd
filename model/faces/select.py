"""Choosing the one face a verification request is about, when the detector finds several.

The caller reports `faces_detected` as len(faces); this module only decides which face counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from model.errors import MultipleFaces, NoFaceDetected
from model.types import SELECTION_POLICIES, Face, SelectionPolicy

# "central": a face's box area minus CENTRE_WEIGHT times the squared distance (in pixels) from its
# box centre to the image centre. Both terms scale with the square of the image size, so the choice
# does not depend on resolution; facenet-pytorch's "center_weighted_size" uses the same rule.
CENTRE_WEIGHT = 2.0


def select_face(
    faces: Sequence[Face],
    policy: SelectionPolicy = "largest",
    image_size: tuple[int, int] | None = None,
) -> Face:
    """The face to verify among `faces` under `policy`.

    - "largest": the largest box (ties: the higher score). Bystanders in a photo are usually
      smaller than its subject.
    - "central": the largest box after a penalty for distance from the image centre (see
      CENTRE_WEIGHT): a subject framed in the middle wins over a larger face at the edge, e.g. a
      person holding up an ID card. Needs `image_size` as (width, height).
    - "reject": exactly one face is required; MultipleFaces otherwise.

    Raises NoFaceDetected when `faces` is empty.
    """
    if policy not in SELECTION_POLICIES:
        raise ValueError(f"unknown face selection policy {policy!r}; known: {SELECTION_POLICIES}")
    if not faces:
        raise NoFaceDetected("no face was detected in the image")
    if policy == "reject":
        if len(faces) > 1:
            raise MultipleFaces(
                f"{len(faces)} faces were detected; send an image with exactly one face"
            )
        return faces[0]
    if policy == "largest":
        return max(faces, key=lambda face: (face.area, face.score))
    if image_size is None:
        raise ValueError('the "central" policy needs the image size')
    centre_x, centre_y = image_size[0] / 2, image_size[1] / 2

    def centre_weighted_area(face: Face) -> tuple[float, float]:
        x, y = face.center
        distance_squared = (x - centre_x) ** 2 + (y - centre_y) ** 2
        return face.area - CENTRE_WEIGHT * distance_squared, face.score

    return max(faces, key=centre_weighted_area)
