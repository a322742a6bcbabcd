"""Carry an alignment template fitted to one detector's landmarks over to another detector's.

Detectors disagree on where the five landmarks are (YuNet puts the mouth corners higher than
MTCNN), so a template fitted to one detector's points misplaces faces found by another. For every
LFW image where both detectors find the subject (the `central` face), the similarity transform
that aligns the source detector's landmarks to the source template is applied to the target
detector's landmarks of the same face; the median of those points over all images is the target
template, in the same chip frame. No identity labels are used, so no protocol pair is touched
by the choice.

    python -m experiments.transfer_template --card weights/dlib-resnet-v1 --source mtcnn --target yunet \
        [--write-into weights/fused-dlib-sface-yunet --template-index 0]

With --write-into, the carried points replace those of that card's template (its landmark weights
are kept).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from experiments.common import parse, study_parser
from model.card import load_card, write_card
from model.evaluation.embeddings import DEFAULT_CACHE_DIR, detect_dataset
from model.evaluation.protocols import identity_images
from model.faces.align import similarity_transform
from model.faces.detectors import DETECTORS, build_detector
from model.paths import REPORTS_DIR


def transfer(source_faces, target_faces, template) -> tuple[np.ndarray, np.ndarray, int]:
    """Median and spread (median absolute deviation) of the target landmarks in the template's
    chip frame, and the count. Medians, because where the two detectors chose different faces the
    carried points are far off and would pull a mean."""
    carried = []
    for source, target in zip(source_faces, target_faces):
        if source is None or target is None:
            continue
        transform = similarity_transform(source.landmarks, template.points, template.weights)
        points = np.c_[np.array(target.landmarks), np.ones(5)] @ transform.T
        carried.append(points)
    carried = np.stack(carried)
    median = np.median(carried, axis=0)
    return median, np.median(np.abs(carried - median), axis=0), len(carried)


def main() -> None:
    parser = study_parser(__doc__)
    parser.add_argument("--card", type=Path, required=True, help="weights folder whose first template is carried")
    parser.add_argument("--source", choices=DETECTORS, default="mtcnn")
    parser.add_argument("--target", choices=DETECTORS, default="yunet")
    parser.add_argument("--write-into", type=Path, help="weights folder whose template gets the carried points")
    parser.add_argument("--template-index", type=int, default=0, help="which of its templates")
    args = parse(parser)

    template = load_card(args.card).template
    images_dir = args.data / "lfw" / "images"
    paths = [p for images in identity_images(images_dir).values() for p in images]
    detections = {
        name: detect_dataset(build_detector(name), images_dir, paths, "central", DEFAULT_CACHE_DIR, 32)[0]
        for name in (args.source, args.target)
    }
    median, spread, count = transfer(detections[args.source], detections[args.target], template)
    report = {
        "card": str(args.card),
        "source": args.source,
        "target": args.target,
        "template_size": template.size,
        "source_points": [list(p) for p in template.points],
        "target_points": [[round(x, 3), round(y, 3)] for x, y in median],
        "target_spread_px": [[round(x, 3), round(y, 3)] for x, y in spread],
        "images": count,
        "command": f"python -m experiments.transfer_template --card {args.card} --source {args.source} --target {args.target}",
    }
    print(f"{count} LFW images with a face from both detectors")
    print(f"{'source point':>18} -> {'target point':>18} (median abs. deviation)")
    for (sx, sy), (tx, ty), (dx, dy) in zip(template.points, median, spread):
        print(f"({sx:7.2f}, {sy:7.2f}) -> ({tx:7.2f}, {ty:7.2f}) ({dx:.2f}, {dy:.2f})")
    out = REPORTS_DIR / f"template_{load_card(args.card).name}_{args.source}_to_{args.target}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    if args.write_into:
        write_template(args.write_into, args.template_index, report)


def write_template(folder: Path, index: int, report: dict) -> None:
    card = load_card(folder)
    entry = card.alignment[index]
    if entry.size != report["template_size"]:
        raise SystemExit(f"template {index} of {folder} is {entry.size} px, not {report['template_size']}")
    source_prefix, target_prefix = f"{report['source']}5-", f"{report['target']}5-"
    carried = entry.model_copy(update={
        "points": tuple(tuple(point) for point in report["target_points"]),
        "name": target_prefix + (entry.name or f"chip{entry.size}").removeprefix(source_prefix),
        "note": f"{report['target']}'s 5 points carried into the frame of {report['card']}'s {report['source']}-fitted "
        f"template: median over {report['images']} LFW images (no identity labels used): {report['command']}",
    })
    alignment = [carried if i == index else template for i, template in enumerate(card.alignment)]
    provenance = {**(card.provenance or {}),
                  f"template_{index}": f"{report['command']} --write-into {folder} --template-index {index}"}
    write_card(card.updated(alignment=alignment, provenance=provenance))


if __name__ == "__main__":
    main()
