"""`facever group FOLDER`: the photos of a folder grouped by person, on this machine (no service), for
a person to review.

    facever group FOLDER [--out DIR] [--weights DIR] [--threshold T] [--max-faces-per-image N] [--recursive]

Every face of every photo is embedded and grouped by the rule and threshold the card calibrates
(model.verify.grouping; `--threshold` overrides the threshold). DIR (default: FOLDER-groups beside
FOLDER) receives groups.json, each face by its image's path relative to FOLDER, and contact sheets:
index.html, group-001.html, ... and ungrouped.html (faces that fit no group), self-contained pages
of face thumbnails. A file that is not a decodable image is listed as skipped, with the reason.

The output holds face crops, i.e. biometric data of the people in the photos: treat it as such
(keep it no wider than the photos themselves, and delete it with them).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from model.errors import InputError, Uncalibrated
from model.files import write_atomic
from model.images import Photo, decode_photo
from model.paths import DEFAULT_ENCODER_DIR
from model.types import Face
from model.verify.grouping import partition
from model.verify.verifier import EMBED_PASS, MAX_FACES

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
THUMBNAIL_SIDE = 112  # pixels, the longer side of a face's thumbnail
CROP_MARGIN = 0.25  # of the box's longer side, added on every side of a face so a reviewer sees its context
SHEET_STYLE = ("body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:4px;width:120px;"
               "vertical-align:top}figcaption{font-size:11px;word-wrap:break-word}td,th{padding:2px 8px}")


@dataclass(frozen=True)
class FoundFace:
    """A face as the output lists it: its image (relative to the folder), where, and its thumbnail."""

    image: str
    face: Face
    thumbnail: bytes  # JPEG

    def listed(self) -> dict:
        return {"image": self.image, "box": [round(float(v), 1) for v in self.face.box],
                "detection_score": round(float(self.face.score), 4)}


def image_files(folder: Path, recursive: bool) -> list[Path]:
    """The folder's images by suffix, sorted by relative path so the output is deterministic."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted((path for path in found if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda path: path.relative_to(folder).as_posix())


def error_code(error: InputError) -> str:
    """The error's kind in snake case (InvalidImage: invalid_image), as the API's code for it reads."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


def thumbnail(photo: Photo, face: Face) -> bytes:
    """The face with its margin, clipped to the image, as a JPEG of at most THUMBNAIL_SIDE a side;
    decoded again as finely as that needs where the photo was decoded down (Photo.view)."""
    pixels, local = photo.view(face, THUMBNAIL_SIDE / (1 + 2 * CROP_MARGIN))
    x1, y1, x2, y2 = local.box
    margin = CROP_MARGIN * max(x2 - x1, y2 - y1)
    height, width = pixels.shape[:2]
    left, top = max(0, math.floor(x1 - margin)), max(0, math.floor(y1 - margin))
    right, bottom = min(width, math.ceil(x2 + margin)), min(height, math.ceil(y2 + margin))
    crop = Image.fromarray(pixels[top:bottom, left:right])
    crop.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def sheet(title: str, body: str) -> str:
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{SHEET_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


def face_grid(faces: list[FoundFace]) -> str:
    return "".join(
        f'<figure><img src="data:image/jpeg;base64,{base64.b64encode(face.thumbnail).decode()}" alt="">'
        f"<figcaption>{html.escape(face.image)}</figcaption></figure>" for face in faces)


def write_sheets(out: Path, groups: list[list[FoundFace]], ungrouped: list[FoundFace]) -> None:
    """index.html (the groups, their sizes and links), a page per group and ungrouped.html."""
    rows = []
    for number, faces in enumerate(groups, start=1):
        page = f"group-{number:03d}.html"
        images = len({face.image for face in faces})
        (out / page).write_text(sheet(f"Group {number}: {len(faces)} faces", face_grid(faces)), encoding="utf-8")
        rows.append(f'<tr><td><a href="{page}">Group {number}</a></td><td>{len(faces)}</td><td>{images}</td></tr>')
    rows.append(f'<tr><td><a href="ungrouped.html">Ungrouped</a></td><td>{len(ungrouped)}</td>'
                f"<td>{len({face.image for face in ungrouped})}</td></tr>")
    (out / "ungrouped.html").write_text(sheet(f"Ungrouped: {len(ungrouped)} faces", face_grid(ungrouped)),
                                        encoding="utf-8")
    table = f"<table><tr><th>group</th><th>faces</th><th>images</th></tr>{''.join(rows)}</table>"
    (out / "index.html").write_text(sheet(f"{out.name}: faces grouped by person", table), encoding="utf-8")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="facever group", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, help="default: FOLDER-groups beside FOLDER")
    parser.add_argument("--weights", type=Path, default=DEFAULT_ENCODER_DIR)
    parser.add_argument("--threshold", type=float, help="the grouping rule's threshold (default: the card's)")
    parser.add_argument("--max-faces-per-image", type=int, default=MAX_FACES)
    parser.add_argument("--recursive", action="store_true", help="also the images of subfolders")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from model.verify.pipeline import FaceVerifier  # the networks load here, not on import

    args = parse(argv)
    folder = args.folder.resolve()
    if not folder.is_dir():
        raise SystemExit(f"facever group: {args.folder} is not a folder")
    out = args.out or folder.parent / f"{folder.name}-groups"
    verifier = FaceVerifier.from_folders(args.weights)
    try:
        grouping = verifier.grouping_rule(args.threshold)
    except Uncalibrated:
        raise SystemExit(f"facever group: the card {verifier.card.name} has no grouping calibration for its "
                         "inference mode; give --threshold (or run `facever calibrate-grouping`)") from None

    files = image_files(folder, args.recursive)
    found: list[FoundFace] = []
    vectors: list[np.ndarray] = []
    no_face, skipped = [], []
    with tqdm(total=len(files), desc="faces", unit="image", file=sys.stderr) as progress:
        for start in range(0, len(files), EMBED_PASS):
            batch, photos = files[start : start + EMBED_PASS], {}
            for path in batch:
                image = path.relative_to(folder).as_posix()
                try:
                    photos[image] = decode_photo(path.read_bytes(), detection_side=verifier.detection_side)
                except InputError as error:
                    skipped.append({"image": image, "code": error_code(error), "message": error.message})
            embedded, _ = verifier.embed_every_face(list(photos.values()), args.max_faces_per_image)
            for (image, photo), faces in zip(photos.items(), embedded):
                if not faces:
                    no_face.append(image)
                found += [FoundFace(image, face.face, thumbnail(photo, face.face)) for face in faces]
                vectors += [face.embedding for face in faces]
            progress.update(len(batch))

    together, alone = partition(grouping.group(np.array(vectors)))
    groups = [[found[i] for i in indices] for indices in together]
    ungrouped = [found[i] for i in alone]

    out.mkdir(parents=True, exist_ok=True)
    listing = {
        "model": verifier.card.name, "rule": grouping.rule, "threshold": grouping.threshold,
        "link_far": grouping.link_far,
        "images": len(files), "faces": len(found),
        "groups": [{"id": number, "faces": [face.listed() for face in faces]}
                   for number, faces in enumerate(groups, start=1)],
        "ungrouped": [face.listed() for face in ungrouped], "no_face": no_face, "skipped": skipped,
    }
    write_atomic(out / "groups.json", (json.dumps(listing, indent=2) + "\n").encode())
    write_sheets(out, groups, ungrouped)
    print(f"{len(files)} images, {len(found)} faces: {len(groups)} groups, {len(ungrouped)} ungrouped, "
          f"{len(skipped)} skipped; written to {out}")


if __name__ == "__main__":
    main()
