"""Face quality through HTTP on the shipped weights: each reason code triggered by an image made for
it from an LFW photo (a tiny face, a blurred one, a dark one, an overexposed one, a head turned by
warping the photo), a clean photo of high quality, and the gate (`min_quality`, the enrolment floor)
answering 422 low_quality with the reasons."""

from __future__ import annotations

import io
import tempfile

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from tests.integration.real_service import real_service
from tests.support.images import jpeg

pytestmark = [pytest.mark.anyio, pytest.mark.data]

PHOTO = "Aaron_Peirsol/Aaron_Peirsol_0001.jpg"
OTHER = "Aaron_Peirsol/Aaron_Peirsol_0002.jpg"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def client():
    async with real_service(storage_url=f"sqlite:///{tempfile.mkdtemp(prefix='facever-')}/q.sqlite3") as (_, client):
        yield client


def photo(lfw_dir, name: str = PHOTO) -> Image.Image:
    return Image.open(lfw_dir / "images" / name).convert("RGB")


def tiny(image: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", image.size, (118, 118, 118))
    small = image.resize((image.width // 5, image.height // 5), Image.Resampling.BOX)
    canvas.paste(small, ((image.width - small.width) // 2, (image.height - small.height) // 2))
    return canvas


def turned(image: Image.Image, at: float = 128.0, squeeze: float = 0.15, stretch: float = 1.6) -> Image.Image:
    """The face turned by warping the photo across the nose (at x = `at`): the image's right of it
    squeezed, its left stretched, as a head turned to the image's right foreshortens."""
    pixels = np.asarray(image)
    x = np.arange(image.width, dtype=np.float64)
    source = np.where(x >= at, at + (x - at) / squeeze, at - (at - x) / stretch)
    columns = np.clip(np.round(source), 0, image.width - 1).astype(int)
    return Image.fromarray(pixels[:, columns])


async def quality_of(client, image: Image.Image) -> dict:
    response = await client.post("/embed", files={"images": ("p.jpg", jpeg(image, 95))})
    assert response.status_code == 200, response.text
    return response.json()["embeddings"][0]["face"]["quality"]


async def test_a_clean_photo_is_of_high_quality(client, lfw_dir) -> None:
    quality = await quality_of(client, photo(lfw_dir))
    assert quality["level"] == "high" and quality["reasons"] == [] and quality["score"] >= 0.95
    assert 35 < quality["eye_distance"] < 55 and abs(quality["yaw"]) < 20


@pytest.mark.parametrize("reason, make", [
    ("small_face", tiny),
    ("blurry", lambda image: image.filter(ImageFilter.GaussianBlur(9))),  # the encoder copes with less
    ("dark", lambda image: ImageEnhance.Brightness(image).enhance(0.12)),
    ("overexposed", lambda image: ImageEnhance.Brightness(image).enhance(3.0)),
    ("extreme_pose", turned),
])
async def test_each_reason_code(client, lfw_dir, reason, make) -> None:
    quality = await quality_of(client, make(photo(lfw_dir)))
    assert reason in quality["reasons"], quality


async def test_the_gate(client, lfw_dir) -> None:
    blurred = jpeg(photo(lfw_dir).filter(ImageFilter.GaussianBlur(9)), 95)
    clean, other = jpeg(photo(lfw_dir), 95), jpeg(photo(lfw_dir, OTHER), 95)
    refused = await client.post("/verify", files={"image1": ("a.jpg", clean), "image2": ("b.jpg", blurred)},
                                data={"min_quality": "high"})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "low_quality" and error["message"].startswith("image2") and "blurry" in error["message"]
    query = await client.post("/verify?min_quality=0.5", files={"image1": ("a.jpg", clean), "image2": ("b.jpg", other)})
    assert query.status_code == 200 and query.json()["faces"]["image2"]["quality"]["level"] == "high"
    bad = await client.post("/verify", files={"image1": ("a.jpg", clean), "image2": ("b.jpg", other)},
                            data={"min_quality": "1.5"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"

    # Enrolment has a floor of its own (medium by default); a probe does not, unless asked.
    await client.post("/galleries", json={"id": "q"})
    await client.post("/galleries/q/subjects", json={"id": "aaron"})
    info = (await client.get("/info")).json()["service"]["quality"]
    assert info["version"] and info["enrol_min_quality"] == info["levels"]["medium"] and info["min_quality"] is None
    assert (await quality_of(client, Image.open(io.BytesIO(blurred))))["level"] == "low"  # a probe may be low
    enrolled = await client.post("/galleries/q/subjects/aaron/faces", files={"images": ("b.jpg", blurred)})
    assert enrolled.status_code == 422 and enrolled.json()["error"]["code"] == "low_quality"
    ok = await client.post("/galleries/q/subjects/aaron/faces", files={"images": ("c.jpg", clean)})
    assert ok.status_code == 201 and ok.json()["faces"][0]["quality"]["level"] == "high"
