"""The trainer: configuration, schedule and protocol-pair tests, on no weights and no dataset (the
runs on real faces and shipped weights: tests/integration/training/test_trainer.py)."""

import json

import pytest

from model.training.config import LossConfig, SamplerConfig, load_config, parse_config
from model.training.trainer import lr_factor, read_test_pairs


def write_config(tmp_path, **overrides):
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(overrides))
    return path


def test_config_merges_defaults_and_names_the_run_after_the_file(tmp_path):
    config = load_config(write_config(tmp_path, loss={"name": "triplet"}, sampler={"p": 4}))
    assert config.name == "experiment"
    assert config.loss == LossConfig(name="triplet", params={})
    assert config.sampler == SamplerConfig(p=4) and config.sampler.k == SamplerConfig().k


def test_misspelt_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'epoch'"):
        load_config(write_config(tmp_path, epoch=3))
    with pytest.raises(ValueError, match="config.sampler"):
        load_config(write_config(tmp_path, sampler={"P": 4}))


def test_toml_configs_are_read(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('seed = 3\n[loss]\nname = "angular"\nparams = { alpha = 45.0 }\n')
    config = load_config(path)
    assert config.seed == 3 and config.loss.params == {"alpha": 45.0}


def test_schedule_warms_up_linearly_then_decays_by_cosine():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0)
    assert lr_factor(50, 100, 10, "constant") == 1.0


def test_a_split_may_test_on_one_fold_of_protocol_pairs(tmp_path):
    # Two folds of one same and one different pair.
    (tmp_path / "pairs.txt").write_text("2 1\nAnn_Lee 1 2\nAnn_Lee 3 Bo_Yu 1\nCy_Oz 2 4\nDe_Ma 1 Cy_Oz 1\n")
    fold_1 = read_test_pairs(load_config_dict({"data": {"split": {"test": {"pairs": "pairs.txt", "fold": 1}}}}),
                             tmp_path)
    assert [(p.first, p.same) for p in fold_1] == [("Cy_Oz/Cy_Oz_0002.jpg", True), ("De_Ma/De_Ma_0001.jpg", False)]
    every = read_test_pairs(load_config_dict({"data": {"split": {"test": {"pairs": "pairs.txt"}}}}), tmp_path)
    assert len(every) == 4
    assert read_test_pairs(load_config_dict({}), tmp_path) is None  # a count of test identities
    with pytest.raises(ValueError, match="no fold 2"):
        read_test_pairs(load_config_dict({"data": {"split": {"test": {"pairs": "pairs.txt", "fold": 2}}}}), tmp_path)
    with pytest.raises(ValueError, match="unknown key 'folds'"):
        read_test_pairs(load_config_dict({"data": {"split": {"test": {"pairs": "pairs.txt", "folds": 1}}}}), tmp_path)


def load_config_dict(overrides: dict):
    return parse_config(overrides, name="test")
