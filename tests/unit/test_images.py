"""Image decoding: every mode becomes upright 8-bit RGB; bad bytes get stable error codes."""

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from model.errors import ImageTooLarge, InvalidImage, UnsupportedFormat
from model.images import decode_image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


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
