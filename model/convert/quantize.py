"""Quantize an encoder to int8 for the OpenVINO engine: post-training, calibrated on LFW View 1 chips.

    facever quantize --weights weights/fused-dlib-sface-yunet --name fused-dlib-sface-yunet-int8
    facever quantize --weights weights/fused-dlib-sface-yunet --member 1 --name sface-2021dec-yunet-int8

`--member i` quantizes one member of a fused card alone, as a card of its own: that member's
network, its alignment template and weights, with the fused card's detector (the lighter cards of
the menu, docs/performance.md).

Each network of the card (a fused encoder's members, one by one) is converted from its torch weights
to OpenVINO and quantized by NNCF (`nncf.quantize`: int8 weights per channel, int8 activations with
ranges from the calibration chips, float32 where int8 would hurt). The calibration chips are faces of
LFW View 1's pairsDevTrain images (never a View 2 image), detected by the card's own detector,
chosen `central`, aligned to each template, plain and mirrored, since the service embeds both. The
result is a weights folder whose card names the quantized networks and borrows the source's torch
weights as its reference; it has no evaluation or calibration of its own until `facever evaluate
--update-card` and `facever calibrate` are run on it: an int8 encoder's distances are its own.

NNCF is needed at quantization time only (`pip install -e '.[convert]'`); the service never imports it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from model.card import CARD_FILE, EncoderCard, load_card, write_card
from model.encoders import load_encoder
from model.encoders.flip import with_mirrors
from model.encoders.loading import per_input_networks, reference_encoder
from model.errors import NoFaceDetected
from model.evaluation.protocols import read_pairs
from model.images import load_image, to_array
from model.paths import DEFAULT_DATA_DIR, WEIGHTS_DIR
from model.verify.pipeline import FaceVerifier

CALIBRATION_PAIRS = "lfw/pairsDevTrain.txt"  # View 1, for choosing and calibrating: never View 2
CALIBRATION_IMAGES = 300
FOLDER = "int8"  # inside the output weights folder


def calibration_images(data_dir: Path, count: int) -> list[str]:
    """The first `count` images (sorted) of View 1's training pairs."""
    pairs = read_pairs(data_dir / CALIBRATION_PAIRS)
    return sorted({path for pair in pairs for path in (pair.first, pair.second)})[:count]


def calibration_chips(verifier: FaceVerifier, data_dir: Path, paths: list[str]) -> list[np.ndarray]:
    """Per template, the chips of every image where a face is found, then their mirror images."""
    per_template: list[list[np.ndarray]] = [[] for _ in verifier.templates]
    for path in paths:
        array = to_array(load_image(data_dir / "lfw" / "images" / path))
        try:
            (face, _), = verifier.locate([array], "central")
        except NoFaceDetected:
            continue
        for chips, kept in zip(verifier.align([array], [face]), per_template):
            kept.append(chips)
    return [with_mirrors(np.concatenate(kept)) for kept in per_template]


def member_alone(card: EncoderCard, index: int) -> EncoderCard:
    """Member `index` of a fused card as a card of its own (read from the fused card's folder):
    its architecture, input, template and borrowed weights, with the fused card's detector and
    inference; its name, licence and provenance are the member's."""
    if card.architecture.name != "fused" or not card.members:
        raise ValueError(f"card {card.name!r} is not a fused card: it has no members to take alone")
    if not 0 <= index < len(card.members):
        raise ValueError(f"card {card.name!r} has {len(card.members)} members, not a member {index}")
    member = card.architecture.params["members"][index]
    about = card.members[index]
    member_folder = card.borrowed_state[f"members.{index}."]
    return EncoderCard.model_validate({
        "name": about["name"], "version": about["version"],
        "architecture": {"name": member["architecture"], "params": member.get("params", {})},
        "input": [card.input[index].model_dump()], "alignment": [card.alignment[index].model_dump()],
        "embedding_dim": load_card(card.folder / member_folder).embedding_dim,
        "borrowed_state": {"": member_folder}, "detector": card.detector,
        "inference": card.inference.model_dump(exclude_none=True),
        "licence": about.get("licence"), "training_data": about.get("training_data"),
        "provenance": {**(about.get("provenance") or {}), "member_of": card.name, "member_index": index},
    }).model_copy(update={"folder": card.folder})


def quantize(source: Path, name: str, out_dir: Path, data_dir: Path, images: int, command: str,
             inference: dict | None = None, member: int | None = None) -> EncoderCard:
    """`inference`: changes to the source card's inference entry (e.g. its flip TTA, chosen on View 1);
    where `out_dir` holds a card already, its flip TTA and note stand unless changed here. `member`:
    quantize that member of a fused source alone (member_alone)."""
    os.environ.setdefault("NNCF_CI", "1")  # NNCF sends no usage telemetry where this is set
    import nncf
    import openvino as ov

    from model.engines.conversion import convert
    from model.engines.openvino import save_model

    card = load_card(source)
    verifier = FaceVerifier.from_folders(source, precision="float32", engine="torch")
    paths = calibration_images(data_dir, images)
    chips = calibration_chips(verifier, data_dir, paths)
    if member is not None:  # the member's own chips, aligned by the fused card's pipeline
        card, chips = member_alone(card, member), [chips[member]]
    networks = per_input_networks(card, reference_encoder(card))
    (out_dir / FOLDER).mkdir(parents=True, exist_ok=True)
    files = []
    for index, ((network, example), samples) in enumerate(zip(networks, chips)):
        model = convert(network, example, ((0,),))
        dataset = nncf.Dataset([np.ascontiguousarray(chip[None]) for chip in samples])
        quantized = nncf.quantize(model, dataset, subset_size=len(samples), preset=nncf.QuantizationPreset.MIXED)
        network_name = card.members[index]["name"] if card.members else card.name
        file = f"{FOLDER}/{network_name}.xml"
        save_model(quantized, out_dir / file)
        files.append(file)
    borrowed = {
        prefix: os.path.relpath(path.parent.resolve(), out_dir.resolve())
        for prefix, path in card.state_files().items()
    }
    data = card.to_json()
    for measured in ("evaluation", "calibration"):
        data.pop(measured, None)
    if (out_dir / CARD_FILE).exists():
        kept = load_card(out_dir).inference
        inference = {"flip_tta": kept.flip_tta, **({"note": kept.note} if kept.note else {}), **(inference or {})}
    quantized_card = EncoderCard.model_validate({
        **data,
        "name": name,
        "borrowed_state": borrowed,
        "inference": {**data["inference"], **(inference or {}), "precision": "int8", "engine": "openvino"},
        "compiled": {
            "engine": "openvino",
            "precision": "int8",
            "files": files,
            "calibration_data": f"{len(chips[0]) // 2} faces of the first {len(paths)} images of LFW View 1's "
            f"{CALIBRATION_PAIRS.split('/')[-1]}, aligned by the card's pipeline, plain and mirrored "
            f"(NNCF {nncf.__version__}, OpenVINO {ov.__version__}, preset MIXED)",
            "command": command,
        },
        "provenance": {**(card.provenance or {}), "quantized_from": card.name, "quantize": command},
    })
    written = write_card(quantized_card, out_dir)
    load_encoder(written, "int8", "openvino")  # the folder must load before it is called done
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facever quantize", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, required=True, help="the float32 encoder folder to quantize")
    parser.add_argument("--name", required=True, help="the quantized encoder's name (and folder under weights/)")
    parser.add_argument("--out", type=Path, help="default: weights/<name>")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="folder holding lfw/")
    parser.add_argument("--images", type=int, default=CALIBRATION_IMAGES, help="View 1 images to calibrate on")
    parser.add_argument("--member", type=int, help="quantize this member of a fused card alone, as its own card")
    parser.add_argument("--flip-tta", choices=("true", "false"), help="default: the source card's")
    parser.add_argument("--note", help="why the inference mode is what it is (into the card)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "facever quantize " + " ".join(sys.argv[1:] if argv is None else argv)
    inference = {key: value for key, value in (("flip_tta", None if args.flip_tta is None else args.flip_tta == "true"),
                                                ("note", args.note)) if value is not None}
    card = quantize(args.weights, args.name, args.out or WEIGHTS_DIR / args.name, args.data, args.images,
                    command.strip(), inference, args.member)
    print(f"wrote {card.folder}: {', '.join(card.compiled.files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
