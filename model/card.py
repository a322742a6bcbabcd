"""The encoder card: a weights folder is its weights (`encoder.pt`) plus this typed description (`model.json`).

The card describes; other packages act on it. It says which architecture to build and with what
input, the alignment template each input's chips need (as data), the detector those templates were
fitted to, the distance, the inference mode and arithmetic it was measured in, the calibrated
operating points with their measured error rates, and the evaluation results with the commands that
made them. It imports no torch and nothing of model.faces: the service, the evaluator, the
calibrator, the trainer and the converters all read it with `load_card` and write it with
`write_card`, and nowhere else.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model.files import write_atomic
from model.types import AlignmentTemplate, Engine, InferenceMode, Precision, detector_parts

CARD_FILE = "model.json"
STATE_FILE = "encoder.pt"

# Embeddings are L2-normalised and compared by Euclidean distance (0 = identical, 2 = opposite):
# the distance a client computes from /embed vectors is the one /verify reports.
DISTANCE = "euclidean_l2_normalised"

# How a probe is scored against a subject's k templates (model.verify.subject_scores).
SubjectRule = Literal["nearest", "mean_distance", "centroid"]


def tta_mode(flip_tta: bool) -> InferenceMode:
    """Calibration and evaluation are kept per inference mode, since flip TTA moves distances."""
    return "flip" if flip_tta else "plain"


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Architecture(_Data):
    name: str
    params: dict[str, Any] = {}


class InputSpec(_Data):
    """What an encoder input expects; the encoder normalises its own input, so this is a record."""

    size: int
    channels: str
    mean: float | list[float]
    scale: float
    range: str


class Inference(_Data):
    flip_tta: bool = False
    precision: Precision = Field("float32", description="the arithmetic the card's figures were measured in")
    engine: Engine = Field("torch", description="what ran the networks when they were measured")
    note: str | None = None


class CompiledNetworks(_Data):
    """Networks saved ahead of time for an engine, e.g. OpenVINO models quantized to int8: one file
    per encoder input (a fused encoder's members, in order), relative to the weights folder."""

    engine: Engine
    precision: Precision
    files: list[str]
    calibration_data: str | None = Field(None, description="what the quantization ranges were measured on")
    command: str | None = None


class ErrorRates(_Data):
    far: float
    frr: float


class OperatingPoint(_Data):
    """A named threshold with its error rates measured on identities it was not chosen on."""

    name: str = Field(exclude=True, description="its key in the calibration's operating_points")
    threshold: float
    description: str = ""
    chosen_on: ErrorRates | None = None
    held_out: ErrorRates

    @property
    def far(self) -> float:
        return self.held_out.far

    @property
    def frr(self) -> float:
        return self.held_out.frr


def _name_points(points: Any) -> Any:
    """Operating points are keyed by name in the JSON; each also knows its own."""
    if not isinstance(points, dict):
        return points
    return {name: {**point, "name": name} if isinstance(point, dict) else point for name, point in points.items()}


class Logistic(_Data):
    """p(same) = sigmoid(a * distance + b)."""

    a: float
    b: float
    form: str | None = None


class Calibration(_Data):
    """Operating points and the distance-to-probability map of one inference mode, and how they were made."""

    default: str
    operating_points: dict[str, OperatingPoint]
    probability: Logistic | None = None
    pairs: dict[str, Any] | None = None
    protocol: str | None = None
    precision: Precision | None = None
    engine: Engine | None = None
    cpu: dict[str, Any] | None = None  # the CPU it was made on (int8 kernels round differently by ISA)
    command: str | None = None
    date: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_the_points(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("operating_points"), dict):
            data = {**data, "operating_points": _name_points(data["operating_points"])}
        return data

    @model_validator(mode="after")
    def _default_exists(self) -> Calibration:
        if self.default not in self.operating_points:
            raise ValueError(f"the default operating point {self.default!r} is not among the operating points")
        return self


class SubjectCalibration(_Data):
    """The subject-level decision of one inference mode: a probe against a subject of k templates
    scored by `rule`, with operating points per k (a subject of more templates than the largest k
    calibrated uses that k's), each measured on identities it was not chosen on."""

    rule: SubjectRule
    default: str
    templates: dict[int, dict[str, OperatingPoint]] = Field(description="k -> operating points")
    far_curves: dict[int, list[tuple[float, float]]] | None = Field(
        None, description="k -> [false-accept rate, threshold] on the choosing half, FAR descending: the 1:N "
        "search's thresholds for a gallery's size come from these (model.verify.open_set)"
    )
    rules_compared: dict[str, Any] | None = None
    trials: dict[int, dict[str, Any]] | None = None
    protocol: str | None = None
    precision: Precision | None = None
    engine: Engine | None = None
    command: str | None = None
    date: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_the_points(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("templates"), dict):
            data = {**data, "templates": {k: _name_points(points) for k, points in data["templates"].items()}}
        return data

    @model_validator(mode="after")
    def _default_everywhere(self) -> SubjectCalibration:
        if not self.templates:
            raise ValueError("a subject calibration needs operating points for at least one k")
        for k, points in self.templates.items():
            if self.default not in points:
                raise ValueError(f"the default operating point {self.default!r} is missing for k={k}")
        return self

    def calibrated_k(self, k: int) -> int:
        """The k whose operating points a subject of k templates uses: its own, or the largest below it."""
        if k < 1:
            raise ValueError("a subject needs at least one template")
        return max((known for known in self.templates if known <= k), default=min(self.templates))

    def points_for(self, k: int) -> dict[str, OperatingPoint]:
        return self.templates[self.calibrated_k(k)]


class MeasuredSearchTarget(_Data):
    """One FPIR target on one measured gallery: the rule's threshold and the rates it gave there."""

    threshold: float
    extrapolated: bool
    fpir: float
    fnir: float
    threshold_for_target_fpir_measured_here: float | None = None


class MeasuredGallery(_Data):
    """One LFW gallery size of the search calibration: its probes, rank-1, and each target's rates."""

    gallery_size: int
    mated_probes: int
    non_mated_probes: int
    rank1: float
    targets: dict[str, MeasuredSearchTarget]


class SearchCalibration(_Data):
    """1:N search of one inference mode: the FPIR targets by name, the rule that turns a target and
    a gallery's size into thresholds (model.verify.open_set), and what it gave on LFW galleries."""

    default: str
    targets: dict[str, float] = Field(description="name -> the false-positive identification rate aimed at")
    rule: str
    measured: list[MeasuredGallery] = Field(description="per gallery size: rank-1, and per target the threshold, "
                                            "FPIR and FNIR measured")
    protocol: str | None = None
    command: str | None = None
    date: str | None = None

    @model_validator(mode="after")
    def _default_exists(self) -> SearchCalibration:
        if self.default not in self.targets:
            raise ValueError(f"the default target {self.default!r} is not among the targets")
        return self

    def measured_nearest(self, gallery_size: int) -> MeasuredGallery | None:
        """The measured gallery closest in size (on a log scale) to `gallery_size`."""
        return min(self.measured, key=lambda row: abs(math.log(row.gallery_size) - math.log(max(gallery_size, 1))),
                   default=None)


class GroupingCalibration(_Data):
    """Grouping faces by person (model.verify.grouping) in one inference mode: the rule, its
    threshold chosen on LFW View 1's images, and what the threshold means for one pair."""

    rule: str
    threshold: float = Field(gt=0)
    link_far: float = Field(description="the share of View 1's impostor pairs closer than the threshold: "
                            "how often one look-alike pair of two people is a link")
    view1: dict[str, float | int] = Field(description="pairwise and BCubed precision, recall and F, and the groups, "
                                    "on the images it was chosen on")
    protocol: str | None = None
    command: str | None = None
    date: str | None = None


class QualityReason(_Data):
    """A reason code's rule: the measure (model.faces.quality.QualityMeasures) past a threshold."""

    measure: str
    index: int | None = Field(None, description="which value of a measure that has several (embedding_norms)")
    below: float | None = None
    above: float | None = None
    absolute: bool = False  # compare the magnitude (pose angles)
    fitted: bool = Field(True, description="chosen on data; false: a fixed value the data could not set")

    def applies(self, measures: Any) -> bool:
        value = getattr(measures, self.measure)
        if value is not None and self.index is not None:
            value = value[self.index] if self.index < len(value) else None
        if value is None:
            return False
        value = abs(value) if self.absolute else value
        return (self.below is not None and value < self.below) or (self.above is not None and value > self.above)


class QualityModel(_Data):
    """The face-quality combination (model.faces.quality.assess): standardised features, logistic
    weights, the score's level thresholds and the reason codes' rules, and how they were fitted."""

    version: str
    features: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    levels: dict[Literal["high", "medium"], float] = Field(description="lowest score of each level")
    reasons: dict[str, list[QualityReason]] = Field(description="a code applies where any of its rules does")
    fitted_on: str | None = None
    inference: InferenceMode | None = None
    command: str | None = None
    date: str | None = None

    @model_validator(mode="after")
    def _one_value_per_feature(self) -> QualityModel:
        if not len(self.features) == len(self.mean) == len(self.scale) == len(self.weights):
            raise ValueError("features, mean, scale and weights must have one value per feature")
        return self


class EncoderCard(_Data):
    """One weights folder's card; `folder` is where it was read from (never written into it)."""

    folder: Path | None = Field(None, exclude=True)
    name: str
    version: str
    architecture: Architecture
    input: list[InputSpec] = Field(description="one per encoder input, as `alignment`")
    alignment: list[AlignmentTemplate] = Field(
        description="one template per encoder input: a fused encoder sees each member's own chip of the face"
    )
    embedding_dim: int = Field(gt=0)
    borrowed_state: dict[str, str] | None = Field(
        None, description="state-dict key prefix -> the weights folder (relative) whose encoder.pt it borrows"
    )
    distance: Literal["euclidean_l2_normalised"] = DISTANCE
    detector: str = Field("mtcnn", description="the detector whose landmarks the templates were fitted to")
    inference: Inference = Inference()
    compiled: CompiledNetworks | None = None
    members: list[dict[str, Any]] | None = None
    licence: str | None = None
    training_data: str | None = None
    provenance: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    evaluation: dict[str, dict[str, Any]] | None = None
    calibration: dict[InferenceMode, Calibration] | None = None
    subjects: dict[InferenceMode, SubjectCalibration] | None = Field(
        None, description="the decision against an enrolled subject of k templates, per inference mode"
    )
    quality: QualityModel | None = Field(None, description="the face-quality model fitted for this encoder")
    search: dict[InferenceMode, SearchCalibration] | None = Field(
        None, description="1:N search's FPIR targets and their measured error rates, per inference mode"
    )
    grouping: dict[InferenceMode, GroupingCalibration] | None = Field(
        None, description="grouping by person: the rule and its threshold, per inference mode"
    )

    @field_validator("input", "alignment", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        """A single-input encoder may give one entry rather than a list of one."""
        return [value] if isinstance(value, dict) else value

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str) -> str:
        detector_parts(value)
        return value

    @model_validator(mode="after")
    def _one_template_per_input(self) -> EncoderCard:
        if len(self.input) != len(self.alignment):
            raise ValueError(f"{len(self.input)} inputs but {len(self.alignment)} alignment templates")
        if self.compiled is not None and len(self.compiled.files) != len(self.input):
            raise ValueError(f"{len(self.compiled.files)} compiled networks for {len(self.input)} inputs")
        if self.inference.precision == "int8" and (
            self.compiled is None or (self.compiled.precision, self.compiled.engine) != ("int8", self.inference.engine)
        ):
            raise ValueError("an int8 card needs its compiled int8 networks for its engine")
        return self

    @property
    def template(self) -> AlignmentTemplate:
        """The template of a single-input encoder (the first of `alignment`)."""
        return self.alignment[0]

    @property
    def precision(self) -> Precision:
        return self.inference.precision

    def calibration_for(self, flip_tta: bool) -> Calibration | None:
        return (self.calibration or {}).get(tta_mode(flip_tta))

    def subjects_for(self, flip_tta: bool) -> SubjectCalibration | None:
        return (self.subjects or {}).get(tta_mode(flip_tta))

    def search_for(self, flip_tta: bool) -> SearchCalibration | None:
        return (self.search or {}).get(tta_mode(flip_tta))

    def grouping_for(self, flip_tta: bool) -> GroupingCalibration | None:
        return (self.grouping or {}).get(tta_mode(flip_tta))

    def network_files(self) -> list[Path]:
        """Every file the encoder's numbers come from: its weights (own and borrowed) and any
        networks compiled ahead of time (with their weights beside them), for cache keys."""
        compiled = [self.folder / file for file in (self.compiled.files if self.compiled else [])]
        return [*self.state_files().values(), *compiled, *(path.with_suffix(".bin") for path in compiled)]

    def state_files(self) -> dict[str, Path]:
        """State-dict key prefix -> file: the folder's own `encoder.pt` (prefix ""), plus the state
        of the weights folders it borrows, so a fused encoder refers to its members' weights
        instead of carrying a copy of them."""
        if self.folder is None:
            raise ValueError(f"card {self.name!r} was not read from a weights folder")
        files = {}
        if (self.folder / STATE_FILE).exists():
            files[""] = self.folder / STATE_FILE
        for prefix, folder in (self.borrowed_state or {}).items():
            files[prefix] = (self.folder / folder / STATE_FILE).resolve()
        return files

    def updated(self, **fields: Any) -> EncoderCard:
        """A validated copy with `fields` replaced (e.g. one more evaluation), in the same folder."""
        return EncoderCard.model_validate({**self.to_json(), **fields, "folder": self.folder})

    def to_json(self) -> dict[str, Any]:
        """The card as its model.json holds it."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def load_card(folder: str | Path) -> EncoderCard:
    folder = Path(folder)
    path = folder / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {CARD_FILE} in {folder}: not an encoder weights folder")
    return EncoderCard.model_validate({**json.loads(path.read_text()), "folder": folder})


def write_card(card: EncoderCard, folder: str | Path | None = None) -> EncoderCard:
    """Write the card into `folder` (default: the one it was read from), atomically, since the
    service may be reading it; returns the card as read back from there."""
    folder = Path(folder if folder is not None else card.folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / CARD_FILE, (json.dumps(card.to_json(), indent=2, ensure_ascii=False) + "\n").encode())
    return load_card(folder)
