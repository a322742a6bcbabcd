"""The trainer on shipped weights and real faces: fine-tuning from a weights folder, and few-step
smoke runs on AT&T and LFW faces."""

import json

import pytest
import torch

from model.card import load_card
from model.encoders import reference_encoder
from model.training import validation
from model.training.config import parse_config
from model.training.trainer import build_model, train
from tests.conftest import WEIGHTS_DIR


def load_config_dict(overrides: dict):
    return parse_config(overrides, name="test")


def test_fine_tuning_starts_from_the_weights_folder_with_early_layers_frozen():
    config = load_config_dict({"encoder": {"init_from": "weights/dlib-resnet-v1", "freeze": ["conv", "units.0"]}})
    encoder, architecture, spec = build_model(config, None)
    assert architecture.name == "dlib_resnet" and spec.size == 150
    frozen = {name for name, p in encoder.named_parameters() if not p.requires_grad}
    assert frozen == {"conv.weight", "conv.bias"} | {n for n, _ in encoder.named_parameters() if n.startswith("units.0.")}
    assert encoder.training
    with pytest.raises(ValueError, match="no parameter"):
        build_model(load_config_dict({"encoder": {"init_from": "weights/dlib-resnet-v1", "freeze": ["stem"]}}), None)


# -- a smoke run on a handful of AT&T identities ----------------------------------------------------


def smoke_config(tmp_path, **overrides) -> dict:
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["s1", "s2", "s3", "s4"], "val": ["s5", "s6"], "test": ["s7", "s8"]}))
    return load_config_dict({
        "epochs": 2,
        "data": {"images": "att_faces", "split": {"file": str(split)}},
        "template": {"size": 32},
        "encoder": {"params": {"embedding_dim": 16, "input_size": 32, "widths": [8, 16, 32]}},
        "loss": {"name": "triplet", "params": {"margin": 0.2}},
        "miner": {"name": "semi_hard", "params": {"margin": 0.2}},
        "sampler": {"p": 4, "k": 3, "batches_per_epoch": 2},
        **overrides,
    })


@pytest.fixture
def att_dir(data_dir):
    if not (data_dir / "att_faces" / "s1").is_dir():
        pytest.skip("AT&T faces not found")
    return data_dir


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Training runs as the experiments do, on one thread: on a busy two-core machine two threads
    wait on each other (MTCNN over these 80 images: 0.7 s on one thread, up to a minute on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def chip_cache(tmp_path_factory):
    """One chip cache for the module: the handful of images is detected and aligned once."""
    return tmp_path_factory.mktemp("chips")


def run(config, tmp_path, name, *, data_dir, chip_cache, resume=False):
    return train(config, data_dir=data_dir, out_dir=tmp_path / name / "weights", runs_dir=tmp_path / name,
                 chip_cache=chip_cache, resume=resume, progress=False)


@pytest.mark.slow
def test_smoke_training_writes_a_loadable_weights_folder(att_dir, chip_cache, tmp_path):
    summary = run(smoke_config(tmp_path), tmp_path, "smoke", data_dir=att_dir, chip_cache=chip_cache)
    card = load_card(tmp_path / "smoke" / "weights")
    encoder = reference_encoder(card)
    assert encoder(torch.rand(3, 3, 32, 32) * 255).shape == (3, 16)
    assert card.template.size == 32 and card.distance == "euclidean_l2_normalised"
    assert card.inference.flip_tta is False and card.inference.precision == "float32"
    assert card.detector == load_card(WEIGHTS_DIR / "dlib-resnet-v1").detector  # the template card's detector
    assert card.training["identities"]["test"] == ["s7", "s8"]
    assert card.calibration_for(flip_tta=False).default == "best_accuracy"
    assert summary["test"]["pairs"] == {"genuine": 90, "impostor": 90}  # 2 x C(10, 2), as many impostor
    log = [json.loads(line) for line in (tmp_path / "smoke" / "test" / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in log] == [1, 2] and "mined_per_batch" in log[0]
    assert (tmp_path / "smoke" / "test" / "loss.png").stat().st_size > 0


@pytest.mark.slow
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(att_dir, chip_cache, tmp_path, monkeypatch):
    config = smoke_config(tmp_path, loss={"name": "pairwise", "params": {"embedding_dim": 16}}, miner=None)
    run(config, tmp_path, "straight", data_dir=att_dir, chip_cache=chip_cache)

    validate, calls = validation.validate, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # dies during epoch 2, after epoch 1's checkpoint
        return validate(*args)

    monkeypatch.setattr(validation, "validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path, "resumed", data_dir=att_dir, chip_cache=chip_cache)
    monkeypatch.setattr(validation, "validate", validate)
    run(config, tmp_path, "resumed", data_dir=att_dir, chip_cache=chip_cache, resume=True)

    straight = torch.load(tmp_path / "straight" / "weights" / "encoder.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "weights" / "encoder.pt", weights_only=True)
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
    lines = (tmp_path / "resumed" / "test" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_a_loss_and_miner_of_different_kinds_are_refused(att_dir, chip_cache, tmp_path):
    config = smoke_config(tmp_path, loss={"name": "contrastive"}, miner={"name": "batch_hard"})
    with pytest.raises(ValueError, match="takes pairs"):
        run(config, tmp_path, "mismatch", data_dir=att_dir, chip_cache=chip_cache)


# -- a smoke run on a handful of LFW people, tested on protocol pairs ----------------------------------

LFW_TEST_PAIRS = """2
Aaron_Peirsol 1 2
Abel_Pacheco 1 3
Aaron_Peirsol 3 Abel_Pacheco 4
Adam_Sandler 1 Abel_Pacheco 2
"""
LFW_OTHERS = ["Abdoulaye_Wade", "Abdullah", "Abdullah_al-Attiyah", "Adel_Al-Jubeir", "Ahmed_Chalabi", "Ai_Sugiyama"]


@pytest.fixture
def mini_lfw(data_dir, tmp_path):
    """An LFW folder of nine people (36 images, linked) with a View 1 style test file of four pairs."""
    images = tmp_path / "data" / "lfw" / "images"
    images.mkdir(parents=True)
    for person in ["Aaron_Peirsol", "Abel_Pacheco", "Adam_Sandler", *LFW_OTHERS]:
        (images / person).symlink_to(data_dir / "lfw" / "images" / person)
    (tmp_path / "data" / "lfw" / "test_pairs.txt").write_text(LFW_TEST_PAIRS)
    return tmp_path / "data"


@pytest.mark.slow
def test_smoke_training_on_lfw_people_absent_from_the_test_pairs(mini_lfw, chip_cache, tmp_path):
    config = smoke_config(tmp_path, data={"images": "lfw/images", "split": {
        "file": None, "val": 2, "test": {"pairs": "lfw/test_pairs.txt"}, "seed": 0}})
    summary = run(config, tmp_path, "lfw", data_dir=mini_lfw, chip_cache=chip_cache)
    identities = summary["training"]["identities"]
    assert identities["test"] == ["Aaron_Peirsol", "Abel_Pacheco", "Adam_Sandler"]
    assert sorted(identities["train"] + identities["val"]) == LFW_OTHERS and len(identities["val"]) == 2
    assert summary["test"]["pairs"] == {"genuine": 2, "impostor": 2}
    assert summary["test"]["threshold"] == summary["training"]["validation"]["threshold"]
    card = load_card(tmp_path / "lfw" / "weights")
    assert card.evaluation["lfw_test"]["protocol"].startswith("the pairs of lfw/test_pairs.txt")
