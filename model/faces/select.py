"""Choosing the one face a verification request is about, when the detector finds several.

Each policy ranks the faces and the first is chosen. Of the others, the one most likely the
subject is the runner-up; where its subject score comes within AMBIGUITY_MARGIN of the chosen
face's, the choice is reported as ambiguous, with the runner-up beside it. The caller reports `faces_detected` as len(faces).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from model.errors import MultipleFaces, NoFaceDetected
from model.types import SELECTION_POLICIES, Face, SelectionPolicy

# "central": a face's box area minus CENTRE_WEIGHT times the squared distance (in pixels) from its
# box centre to the image centre. Both terms scale with the square of the image size, so the choice
# does not depend on resolution; facenet-pytorch's "center_weighted_size" uses the same rule.
CENTRE_WEIGHT = 2.0


@dataclass(frozen=True)
class SubjectPolicyWeights:
    """How likely a face is the person a photo is of: log(area) - centre_weight * (d / h)^2 +
    confidence_weight * log(detection score), d the distance of the face's centre from the image's
    and h half the image's diagonal. Every term is scale-free, so the choice does not depend on the
    resolution."""

    centre_weight: float
    confidence_weight: float

    def score(self, face: Face, image_size: tuple[int, int]) -> float:
        width, height = image_size
        x, y = face.center
        offset = math.hypot(x - width / 2, y - height / 2) / (math.hypot(width, height) / 2)
        return (math.log(max(face.area, 1e-6)) - self.centre_weight * offset**2
                + self.confidence_weight * math.log(max(face.score, 1e-6)))


# The default "subject" rule, chosen on LFW View 1 and synthetic composites, never on View 2
# (python -m experiments.face_choice; docs/faces.md).
SUBJECT = SubjectPolicyWeights(centre_weight=4.0, confidence_weight=1.0)
# A choice is ambiguous when the runner-up's subject score is within this of the chosen face's
# (log units: 0.4 is a runner-up about two thirds as likely).
AMBIGUITY_MARGIN = 0.4


@dataclass(frozen=True)
class FaceChoice:
    face: Face
    runner_up: Face | None  # of the other faces, the one most likely the subject (by SUBJECT's score)
    ambiguous: bool  # the runner-up is nearly as likely the subject (SUBJECT's score within AMBIGUITY_MARGIN)


def rank_faces(
    faces: Sequence[Face], rule: str | SubjectPolicyWeights, image_size: tuple[int, int] | None = None
) -> list[tuple[Face, float]]:
    """The faces best first, each with its score under `rule`: "largest" (area, ties broken by
    detection score), "central" (see CENTRE_WEIGHT), "subject" (SUBJECT) or a SubjectPolicyWeights.
    The central and subject rules need `image_size` as (width, height)."""
    if rule == "largest":
        scored = [(face, face.area + face.score * 1e-9) for face in faces]
    else:
        if image_size is None:
            raise ValueError(f"the {rule!r} rule needs the image size")
        if rule == "central":
            centre_x, centre_y = image_size[0] / 2, image_size[1] / 2
            scored = [(face, face.area - CENTRE_WEIGHT * ((face.center[0] - centre_x) ** 2
                                                            + (face.center[1] - centre_y) ** 2) + face.score * 1e-9)
                      for face in faces]
        else:
            subject = SUBJECT if rule == "subject" else rule
            if not isinstance(subject, SubjectPolicyWeights):
                raise ValueError(f"unknown face ranking rule {rule!r}")
            scored = [(face, subject.score(face, image_size)) for face in faces]
    return sorted(scored, key=lambda pair: pair[1], reverse=True)


def choose_face(
    faces: Sequence[Face], policy: SelectionPolicy = "subject", image_size: tuple[int, int] | None = None
) -> FaceChoice:
    """The face to verify among `faces` under `policy`, its runner-up and whether the two are close.

    - "subject" (the default): the face most likely the person the photo is of, by size, centrality
      and detection confidence together (SUBJECT).
    - "largest": the largest box (ties: the higher score).
    - "central": the largest box after a penalty for distance from the image centre (see
      CENTRE_WEIGHT).
    - "reject": exactly one face is required; MultipleFaces otherwise.

    Raises NoFaceDetected when `faces` is empty.
    """
    if policy not in SELECTION_POLICIES:
        raise ValueError(f"unknown face selection policy {policy!r}; known: {SELECTION_POLICIES}")
    if not faces:
        raise NoFaceDetected("no face was detected in the image")
    if policy == "reject":
        if len(faces) > 1:
            raise MultipleFaces(f"{len(faces)} faces were detected")
        return FaceChoice(faces[0], None, False)
    chosen = rank_faces(faces, policy, image_size)[0][0]
    if len(faces) == 1 or image_size is None:
        return FaceChoice(chosen, None, False)
    # The runner-up is the other face most likely the subject, whichever policy chose.
    runner_up, score = max(((face, SUBJECT.score(face, image_size)) for face in faces if face is not chosen),
                           key=lambda pair: pair[1])
    return FaceChoice(chosen, runner_up, SUBJECT.score(chosen, image_size) - score < AMBIGUITY_MARGIN)


def select_face(
    faces: Sequence[Face], policy: SelectionPolicy = "subject", image_size: tuple[int, int] | None = None
) -> Face:
    """The chosen face alone (see choose_face)."""
    return choose_face(faces, policy, image_size).face
