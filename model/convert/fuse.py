"""Make a fused encoder's weights folder from member weights folders.

    facever fuse --members weights/dlib-resnet-v1 weights/sface-2021dec --weights 1.0 0.5 \
        --name fused-dlib-sface-yunet --detector yunet+mtcnn --precision bfloat16

The result is an ordinary encoder folder (a model.json that borrows its members' weights) that the
service, the evaluator and the calibrator load like any other; run `facever evaluate --update-card`
and `facever calibrate` on it afterwards, since a fused encoder has distances of its own.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from model.card import EncoderCard, load_card, write_card
from model.encoders import reference_encoder
from model.paths import WEIGHTS_DIR
from model.types import detector_parts

FUSED_PRECISIONS = ("float32", "bfloat16")  # what a card made here can be served in


def fuse(
    member_dirs: list[Path],
    weights: list[float],
    name: str,
    out_dir: Path,
    flip_tta: bool,
    detector: str = "mtcnn",
    precision: str = "float32",
) -> Path:
    """The members' templates are copied as they are: they must suit `detector`'s landmarks (see
    `python -m experiments.transfer_template` to carry a template over to another detector)."""
    detector_parts(detector)  # refuses an unknown name before anything is written
    if len(member_dirs) != len(weights):
        raise ValueError("give one weight per member")
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError("member weights must be finite and above 0")
    cards = [load_card(folder) for folder in member_dirs]
    if any(card.architecture.name == "fused" or len(card.alignment) != 1 for card in cards):
        raise ValueError("members must be plain encoders, not fused ones")
    members = [
        {"architecture": card.architecture.name, "params": card.architecture.params, "weight": weight}
        for card, weight in zip(cards, weights)
    ]
    fused = EncoderCard(
        name=name,
        version="1.0.0",
        architecture={"name": "fused", "params": {"members": members}},
        input=[card.input[0] for card in cards],
        alignment=[card.template for card in cards],
        embedding_dim=sum(card.embedding_dim for card in cards),
        # The members' weights stay in their own folders (no 50 MB copy): prefix -> folder.
        borrowed_state={
            f"members.{index}.": os.path.relpath(card.folder.resolve(), out_dir.resolve())
            for index, card in enumerate(cards)
        },
        detector=detector,
        inference={"flip_tta": flip_tta, "precision": precision},
        members=[
            {"name": card.name, "version": card.version, "weight": weight,
             "provenance": card.provenance, "licence": card.licence, "training_data": card.training_data}
            for card, weight in zip(cards, weights)
        ],
        licence=" AND ".join(sorted({str(card.licence) for card in cards})),
        provenance={
            "converter": "facever fuse --members "
            + " ".join(str(folder) for folder in member_dirs)
            + " --weights " + " ".join(str(w) for w in weights) + f" --name {name}"
            + f" --detector {detector} --precision {precision}" + ("" if flip_tta else " --no-flip-tta"),
        },
    )
    reference_encoder(write_card(fused, out_dir))  # the folder must load strictly before it is called done
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="facever fuse", description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=Path, nargs="+", required=True, help="member weights folders")
    parser.add_argument("--weights", type=float, nargs="+", required=True, help="one weight per member")
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, help="default: weights/<name>")
    parser.add_argument("--no-flip-tta", dest="flip_tta", action="store_false")
    parser.add_argument("--detector", default="mtcnn", help="the detector the members' templates suit")
    # int8 needs networks quantized from the fused card's (`facever quantize`), which a new card has not.
    parser.add_argument("--precision", choices=FUSED_PRECISIONS, default="float32")
    args = parser.parse_args(argv)
    out = fuse(args.members, args.weights, args.name, args.out or WEIGHTS_DIR / args.name, args.flip_tta,
               args.detector, args.precision)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
