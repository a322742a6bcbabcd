"""1:N search's decision, torch-free: the threshold that holds a gallery's false-positive
identification rate (FPIR) at a target, for its size.

A non-mated probe (someone not enrolled) is falsely identified when any of the N subjects scores at
or below its threshold, so with a per-subject false-accept rate FAR, FPIR = 1 - (1 - FAR)^N, about
N x FAR. The per-subject threshold is therefore read off the subject-level false-accept curve of
the subject's number of templates (model.card.SubjectCalibration.far_curves) at
FAR = 1 - (1 - FPIR)^(1/N). model.evaluation.search_calibration checks this rule against measured FPIR and
FNIR on LFW galleries of several sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.card import SearchCalibration, SubjectCalibration
from model.errors import Uncalibrated, UnknownOperatingPoint
from model.verify.decision import Decision, Verdict


def per_subject_far(fpir: float, gallery_size: int) -> float:
    """The false-accept rate per subject that gives `fpir` over `gallery_size` independent subjects."""
    if gallery_size < 1:
        raise ValueError("a gallery to search needs at least one subject")
    return -math.expm1(math.log1p(-fpir) / gallery_size)


def search_threshold(calibration: SubjectCalibration, templates: int, fpir: float,
                     gallery_size: int) -> tuple[float, bool]:
    """The threshold for a subject of `templates` templates in a gallery of `gallery_size`, and
    whether it is extrapolated: True where the FAR needed lies below the smallest the calibration
    measured, whose threshold is then used (stricter FPIR is not promised)."""
    curves = calibration.far_curves
    if not curves:
        raise ValueError("the card's subject calibration has no false-accept curves (run facever calibrate-subjects)")
    k = max((known for known in curves if known <= templates), default=min(curves))
    fars, thresholds = (np.array(column, dtype=np.float64) for column in zip(*curves[k]))
    far = per_subject_far(fpir, gallery_size)
    if far <= fars.min():
        return float(thresholds[np.argmin(fars)]), bool(far < fars.min())
    if far >= fars.max():
        return float(thresholds[np.argmax(fars)]), False
    order = np.argsort(fars)  # np.interp wants ascending x: log FAR against threshold
    return float(np.interp(math.log(far), np.log(fars[order]), thresholds[order])), False


@dataclass(frozen=True)
class SearchVerdict:
    """One candidate judged: the decision on its score, and whether its threshold was extrapolated."""

    verdict: Verdict
    extrapolated: bool


@dataclass(frozen=True)
class SearchDecision:
    """How a search judges its candidates: an explicit threshold on every score, or the named FPIR
    target, whose threshold depends on each candidate's number of templates and the gallery's size."""

    threshold: float | None
    point: str | None = None
    fpir: float | None = None
    subjects: SubjectCalibration | None = None
    calibration: SearchCalibration | None = None

    def judge(self, score: float, templates: int, gallery_size: int) -> SearchVerdict:
        if self.threshold is not None:
            return SearchVerdict(Decision(self.threshold, None, None).judge(score), False)
        threshold, extrapolated = search_threshold(self.subjects, templates, self.fpir, gallery_size)
        return SearchVerdict(Decision(threshold, None, None).judge(score), extrapolated)


def resolve_search(subjects: SubjectCalibration | None, calibration: SearchCalibration | None,
                   threshold: float | None = None, operating_point: str | None = None) -> SearchDecision:
    """An explicit threshold wins; else the named (or default) FPIR target of a calibrated search,
    whose subjects are scored by their centroids. Uncalibrated or UnknownOperatingPoint otherwise."""
    if threshold is not None:
        return SearchDecision(float(threshold))
    if subjects is None or calibration is None or subjects.rule != "centroid":
        raise Uncalibrated("the encoder has no calibrated search")
    name = operating_point or calibration.default
    if name not in calibration.targets:
        raise UnknownOperatingPoint(f"unknown operating point {name!r}; known: {', '.join(calibration.targets)}")
    return SearchDecision(None, name, calibration.targets[name], subjects, calibration)
