"""`facever group FOLDER` on real LFW faces with the shipped weights: three people's photos come out as
three groups, a broken file as skipped and a blank image as faceless; and its contact sheets on a
synthetic image (thumbnails clipped to the image, captions escaped)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from model.card import EncoderCard, load_card
from model.folder_grouping import THUMBNAIL_SIDE, FoundFace, main, thumbnail, write_sheets
from model.images import Photo
from model.paths import DEFAULT_ENCODER_DIR
from model.types import Face
from tests.integration.real_service import skip_unless_shipped_model

PEOPLE = ("Colin_Powell", "George_W_Bush", "Tony_Blair")  # sorted: the order of their first images
PHOTOS_EACH = 3


@pytest.fixture(scope="module")
def folder(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Links to three photos of each person (never copies), a text file named broken.jpg and a
    blank grey PNG."""
    skip_unless_shipped_model()
    folder = tmp_path_factory.mktemp("grouping") / "photos"
    folder.mkdir()
    for person in PEOPLE:
        for number in range(1, PHOTOS_EACH + 1):
            name = f"{person}_{number:04d}.jpg"
            (folder / name).symlink_to(lfw_dir / "images" / person / name)
    (folder / "broken.jpg").write_bytes(b"notes.txt: not an image\n")
    Image.new("RGB", (200, 200), (128, 128, 128)).save(folder / "blank.png")
    return folder


@pytest.fixture(scope="module")
def grouped(folder: Path) -> tuple[Path, dict]:
    """The folder grouped by the card's calibration, once for the tests that read the output."""
    out = folder.parent / "out"
    main([str(folder), "--out", str(out), "--weights", str(DEFAULT_ENCODER_DIR)])
    return out, json.loads((out / "groups.json").read_text())


def test_each_person_s_photos_form_one_group(grouped):
    out, listing = grouped
    assert listing["model"] == DEFAULT_ENCODER_DIR.name and listing["images"] == len(PEOPLE) * PHOTOS_EACH + 2
    card = load_card(DEFAULT_ENCODER_DIR)
    calibration = card.grouping_for(card.inference.flip_tta)
    assert (listing["rule"], listing["threshold"], listing["link_far"]) == (
        calibration.rule, calibration.threshold, calibration.link_far)
    groups = [sorted(face["image"] for face in group["faces"]) for group in listing["groups"]]
    assert sorted(groups) == [[f"{person}_{n:04d}.jpg" for n in range(1, PHOTOS_EACH + 1)] for person in PEOPLE]
    assert [group["id"] for group in listing["groups"]] == [1, 2, 3]
    assert listing["faces"] == len(PEOPLE) * PHOTOS_EACH + len(listing["ungrouped"])


def test_a_broken_file_is_skipped_and_a_blank_image_has_no_face(grouped):
    _, listing = grouped
    assert [(skip["image"], skip["code"]) for skip in listing["skipped"]] == [("broken.jpg", "invalid_image")]
    assert listing["no_face"] == ["blank.png"]


def test_the_listing_names_images_relative_to_the_folder(grouped, folder):
    out, listing = grouped
    text = (out / "groups.json").read_text()
    images = [face["image"] for group in listing["groups"] for face in group["faces"]]
    images += [face["image"] for face in listing["ungrouped"]] + listing["no_face"]
    images += [skip["image"] for skip in listing["skipped"]]
    assert str(folder) not in text and not any(Path(image).is_absolute() for image in images)


def test_the_contact_sheets_show_each_group_s_faces(grouped):
    out, listing = grouped
    assert {path.name for path in out.glob("*.html")} == {"index.html", "ungrouped.html",
                                                           "group-001.html", "group-002.html", "group-003.html"}
    page = (out / "group-001.html").read_text()
    assert page.count("data:image/jpeg;base64,") == PHOTOS_EACH and "<script" not in page
    assert all(face["image"] in page for face in listing["groups"][0]["faces"])
    assert all(f'href="group-00{number}.html"' in (out / "index.html").read_text() for number in (1, 2, 3))


def test_a_threshold_given_overrides_the_card(folder, tmp_path, capsys):
    main([str(folder), "--out", str(tmp_path), "--threshold", "0.05"])
    listing = json.loads((tmp_path / "groups.json").read_text())
    assert listing["threshold"] == 0.05 and listing["link_far"] is None
    assert listing["groups"] == [] and len(listing["ungrouped"]) == listing["faces"] >= len(PEOPLE) * PHOTOS_EACH
    assert f"0 groups, {listing['faces']} ungrouped, 1 skipped" in capsys.readouterr().out


def test_without_a_calibration_or_a_threshold_it_says_what_to_give(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(EncoderCard, "grouping_for", lambda card, flip_tta: None)
    with pytest.raises(SystemExit, match="--threshold"):
        main([str(folder), "--out", str(tmp_path)])


def test_a_face_at_the_edge_is_cropped_within_the_image():
    photo = Photo.of(Image.new("RGB", (200, 200), (90, 120, 150)))
    face = Face(box=(-20.0, 50.0, 60.0, 130.0), score=0.9, landmarks=((0.0, 0.0),) * 5)
    # 80 px and a 20 px margin: x from -40 clipped to 0 (80 wide), y 30..150 (120 high)
    assert Image.open(io.BytesIO(thumbnail(photo, face))).size == (75, THUMBNAIL_SIDE)


def test_the_sheets_escape_captions(tmp_path):
    picture = io.BytesIO()
    Image.new("RGB", (20, 20)).save(picture, format="JPEG")
    face = Face(box=(0.0, 0.0, 10.0, 10.0), score=0.9, landmarks=((0.0, 0.0),) * 5)
    hostile = FoundFace("<script>alert(1)</script>.jpg", face, picture.getvalue())
    write_sheets(tmp_path, [[hostile, hostile]], [hostile])
    for name in ("group-001.html", "ungrouped.html"):
        page = (tmp_path / name).read_text()
        assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in page
        assert base64.b64encode(picture.getvalue()).decode() in page
