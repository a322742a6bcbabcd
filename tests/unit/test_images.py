"""Image decoding: every mode becomes upright 8-bit RGB; bad bytes get stable error codes."""

import io
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageOps

from model.errors import ImageTooLarge, InvalidImage, UnsupportedFormat
from model.images import _UPRIGHT, decode_image, decode_photo, stored_region, to_array
from model.types import Face
from tests.support.images import encode


def gradient(width=40, height=30) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    array = np.stack([np.tile(x, (height, 1))] * 3, axis=-1)
    array[..., 1] = 128
    return Image.fromarray(array, "RGB")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_supported_formats_decode_to_rgb(fmt):
    image = decode_image(encode(gradient(), fmt))
    assert image.mode == "RGB" and image.size == (40, 30)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1", "I"])
def test_every_mode_becomes_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode == "I" else "PNG"
    image = decode_image(encode(gradient().convert(mode), fmt))
    assert image.mode == "RGB"


def test_sixteen_bit_png_keeps_its_range():
    array = np.full((10, 10), 40000, dtype=np.uint16)
    decoded = np.asarray(decode_image(encode(Image.fromarray(array), "PNG")))
    assert decoded.shape == (10, 10, 3)
    assert abs(int(decoded[0, 0, 0]) - round(40000 / 65535 * 255)) <= 1


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(decode_image(encode(rgba, "PNG")))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied():
    wide = gradient(40, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90° clockwise turn
    decoded = decode_image(encode(wide, "JPEG", exif=exif.tobytes()))
    assert decoded.size == (30, 40)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    red, green, blue = np.asarray(decode_image(data))[0, 0]
    assert red > 200 and blue < 50


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20],
    ids=["empty", "text", "png-signature-only"],
)
def test_not_an_image(data):
    with pytest.raises(InvalidImage):
        decode_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(fmt):
    data = encode(gradient(200, 200), fmt)
    with pytest.raises(InvalidImage):
        decode_image(data[: len(data) // 2])


def test_pdf_is_unsupported():
    with pytest.raises(UnsupportedFormat):
        decode_image(b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n")


def test_format_outside_the_list_is_unsupported():
    with pytest.raises(UnsupportedFormat):
        decode_image(encode(gradient(), "PPM"))


def test_pixel_limit_is_checked_before_decoding():
    data = encode(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=1_000_000)


def test_decompression_bomb_header_is_refused():
    # A PNG whose header declares 100,000 x 100,000 pixels, with a valid CRC and almost no data.
    data = encode(Image.new("1", (1, 1)), "PNG")
    header = data[12:16] + (100_000).to_bytes(4, "big") * 2 + data[24:29]
    bomb = data[:12] + header + zlib.crc32(header).to_bytes(4, "big") + data[33:]
    with pytest.raises(ImageTooLarge):
        decode_image(bomb)


# -- photos: decoded as finely as detection needs, regions as finely as alignment needs -------------


def textured(width: int, height: int) -> Image.Image:
    """Smooth but everywhere different, so a crop in the wrong place or orientation shows."""
    y, x = np.mgrid[0:height, 0:width]
    array = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    return Image.fromarray(array.astype(np.uint8), "RGB")


def square_face(x1: float, y1: float, side: float) -> Face:
    points = tuple((x1 + side * u, y1 + side * v) for u, v in ((0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.75), (0.65, 0.75)))
    return Face(box=(x1, y1, x1 + side, y1 + side), score=0.9, landmarks=points)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_stored_region_matches_pillows_transposition(orientation):
    stored = textured(7, 5)
    upright = ImageOps.exif_transpose(_tagged(stored, orientation))
    box = (1, 2, 4, 5) if upright.height >= 5 else (1, 1, 4, 3)
    crop = stored.crop(stored_region(box, orientation, stored.size))
    if orientation in _UPRIGHT:
        crop = crop.transpose(_UPRIGHT[orientation])
    assert np.array_equal(np.asarray(crop), np.asarray(upright.crop(box)))


def _tagged(image: Image.Image, orientation: int) -> Image.Image:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    reopened = Image.open(io.BytesIO(encode(image, "PNG", exif=exif)))
    reopened.load()
    return reopened


def test_a_large_jpeg_is_decoded_as_finely_as_detection_needs():
    data = encode(textured(4000, 3000), "JPEG", quality=90)
    photo = decode_photo(data, detection_side=640)
    # 1/8 would be 500 pixels wide, less than detection looks at; 1/4 is 1000.
    assert photo.reduction == 4 and photo.pixels.shape == (750, 1000, 3) and photo.size == (4000, 3000)
    assert photo.jpeg is data
    small = decode_photo(encode(textured(600, 400), "JPEG"), detection_side=640)
    assert small.reduction == 1 and small.jpeg is None and small.size == (600, 400)
    png = decode_photo(encode(textured(2000, 1000), "PNG"), detection_side=640)
    assert png.reduction == 1 and png.pixels.shape == (1000, 2000, 3)


def test_a_photo_decoded_for_the_first_look_is_decoded_again_for_the_full_look():
    data = encode(textured(4000, 3000), "JPEG", quality=90)
    coarse = decode_photo(data, detection_side=320)  # 1/8: 500 pixels wide
    finer = coarse.finer(640)
    assert coarse.reduction == 8 and finer.reduction == 4 and finer.pixels.shape == (750, 1000, 3)
    assert finer.size == coarse.size and finer.finer(640) is finer and coarse.finer(320) is coarse
    png = decode_photo(encode(textured(2000, 1000), "PNG"), detection_side=320)
    assert png.finer(640) is png  # nothing finer to decode


def test_faces_map_between_the_reduced_and_the_full_pixels():
    photo = decode_photo(encode(textured(4000, 3000), "JPEG"), detection_side=640)
    found = square_face(10.0, 20.0, 50.0)  # in the reduced pixels
    full = photo.face_in_full(found)
    # pixel centres: (x + 0.5) * 4 - 0.5
    assert full.box == (41.5, 81.5, 241.5, 281.5)
    pixels, back = photo.view(full, min_side=30)  # 50 reduced pixels suffice
    assert pixels is photo.pixels and back.box == pytest.approx(found.box)


@pytest.mark.parametrize("orientation", [1, 6, 3, 8])
def test_a_small_face_is_aligned_from_its_region_decoded_in_full(orientation):
    stored = textured(4000, 3000)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif)
    photo = decode_photo(data, detection_side=640)
    full = to_array(decode_image(data))
    assert photo.size == (full.shape[1], full.shape[0])
    face = square_face(1200.0, 700.0, 100.0)  # 25 pixels in the 1/4 decode, under the 150 asked for
    pixels, local = photo.view(face, min_side=150)
    x0, y0 = round(face.box[0] - local.box[0]), round(face.box[1] - local.box[1])
    assert local.box == pytest.approx((face.box[0] - x0, face.box[1] - y0, face.box[2] - x0, face.box[3] - y0))
    # The region is the full decode's own pixels there, the face and as much again around it.
    assert np.array_equal(pixels, full[y0 : y0 + pixels.shape[0], x0 : x0 + pixels.shape[1]])
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 300


def test_a_medium_face_is_decoded_only_as_finely_as_it_needs():
    photo = decode_photo(encode(textured(4000, 3000), "JPEG"), detection_side=640)
    pixels, local = photo.view(square_face(1000.0, 1000.0, 400.0), min_side=150)  # 100 at 1/4, 200 at 1/2
    assert local.width == pytest.approx(200.0) and pixels.shape[0] == pytest.approx(600, abs=3)
