"""Calibration helpers: identity split, all-pairs distances, the logistic probability map."""

import numpy as np
import pytest

from model.card import Calibration
from model.engines.cpu import describe_cpu
from model.evaluation.calibrate import (
    PairDistances,
    all_pair_distances,
    calibrate_mode,
    fit_logistic,
    provenance,
    split_identities,
)


def test_split_is_disjoint_deterministic_and_capped():
    paths = [f"person{p}/person{p}_{i:04d}.jpg" for p in range(40) for i in range(1, 30)]
    first, second = split_identities(paths)
    assert set(first).isdisjoint(second) and len(first) + len(second) == 40
    assert all(len(v) == 20 for v in first.values())
    assert split_identities(paths) == (first, second)


def test_all_pair_distances_counts_and_values():
    # Three unit vectors: identity a has two images (orthogonal), identity b one.
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    pairs = all_pair_distances(embeddings, {"a": [0, 1], "b": [2]})
    assert pairs.genuine == pytest.approx([np.sqrt(2)])
    assert sorted(pairs.impostor) == pytest.approx([0.0, np.sqrt(2)])


def test_logistic_fit_crosses_one_half_between_the_classes():
    rng = np.random.default_rng(1)
    pairs = PairDistances(genuine=rng.normal(0.6, 0.05, 2000), impostor=rng.normal(1.0, 0.05, 20000))
    a, b = fit_logistic(pairs)
    assert a < 0
    assert -b / a == pytest.approx(0.8, abs=0.01)  # equal priors: p = 1/2 midway


def test_operating_points_are_ordered_and_measured_on_held_out():
    rng = np.random.default_rng(2)
    choose = PairDistances(rng.normal(0.6, 0.1, 5000), rng.normal(1.1, 0.1, 200_000))
    held_out = PairDistances(rng.normal(0.6, 0.1, 5000), rng.normal(1.1, 0.1, 200_000))
    result = calibrate_mode(choose, held_out)
    points = result["operating_points"]
    assert points["far_1e-4"]["threshold"] < points["far_1e-3"]["threshold"] < points["far_1e-2"]["threshold"]
    assert points["far_1e-3"]["chosen_on"]["far"] <= 1e-3
    assert points["far_1e-3"]["held_out"]["far"] == pytest.approx(1e-3, abs=5e-4)
    assert result["default"] in points


def test_a_calibration_with_its_provenance_is_what_the_card_holds():
    rng = np.random.default_rng(3)
    pairs = PairDistances(rng.normal(0.6, 0.1, 2000), rng.normal(1.1, 0.1, 50_000))
    made = {**calibrate_mode(pairs, pairs), **provenance("int8", "openvino", "facever calibrate")}
    calibration = Calibration.model_validate(made)
    assert calibration.cpu == describe_cpu() and calibration.engine == "openvino"
    assert Calibration.model_validate(calibration.model_dump(mode="json")) == calibration
