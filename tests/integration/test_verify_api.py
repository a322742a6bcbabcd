"""The verification API's inputs on the shipped weights, through HTTP: the default face choice and its
ambiguity, face_policy=all, embeddings given back in place of images (JSON and multipart), options in
the query string, and a small face in a large photo. Every refusal gets its documented code.

The photos are LFW's; the composites (a bystander, a group) are made here from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.integration.real_service import real_service
from tests.support.answers import refused
from tests.support.images import jpeg

pytestmark = [pytest.mark.anyio, pytest.mark.data]

SUBJECT = ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg")
OTHERS = ("Abdullah_Gul/Abdullah_Gul_0001.jpg", "Colin_Powell/Colin_Powell_0001.jpg")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def client():
    async with real_service() as (_, client):
        yield client


def photo(lfw_dir: Path, name: str) -> Image.Image:
    return Image.open(lfw_dir / "images" / name).convert("RGB")


def face_crop(image: Image.Image) -> Image.Image:
    """The middle of an LFW photo, where its face is."""
    return image.crop((70, 60, 180, 190))


def with_bystander(subject: Image.Image, bystander: Image.Image) -> bytes:
    """The subject's photo at twice its size, near the middle of a wider frame, and a larger face
    at its right edge: a neighbour leaning into the picture."""
    wide = Image.new("RGB", (900, 500), (128, 128, 128))
    wide.paste(subject.resize((500, 500)), (100, 0))
    wide.paste(face_crop(bystander).resize((290, 343)), (610, 80))
    return jpeg(wide)


def group(*people: Image.Image) -> bytes:
    """LFW photos side by side: one face in each."""
    canvas = Image.new("RGB", (250 * len(people), 250))
    for index, person in enumerate(people):
        canvas.paste(person, (250 * index, 0))
    return jpeg(canvas)


def in_large_photo(image: Image.Image, size: tuple[int, int] = (4000, 3000), at: tuple[int, int] = (2600, 900)) -> bytes:
    """A 250x250 photo at its own resolution inside a large, plain, slightly noisy one: its face
    (about 110 pixels) is under 20 pixels where detection looks, and a tenth of that of the photo."""
    rng = np.random.default_rng(0)
    canvas = Image.fromarray(rng.integers(100, 140, (size[1], size[0], 3), dtype=np.uint8))
    canvas.paste(image, at)
    return jpeg(canvas)


async def verify(client, files: dict[str, bytes] | None = None, data: dict | None = None, params: dict | None = None):
    return await client.post("/verify", files={k: (f"{k}.jpg", v) for k, v in (files or {}).items()}, data=data,
                             params=params)


async def embedding_of(client, image: bytes) -> dict:
    response = await client.post("/embed", files=[("images", ("a.jpg", image))])
    assert response.status_code == 200, response.text
    return response.json()["embeddings"][0]


# -- the face a photo is of -----------------------------------------------------------------------


async def test_the_default_chooses_the_subject_not_a_larger_bystander(client, lfw_dir):
    subject, same_person, bystander = photo(lfw_dir, SUBJECT[0]), photo(lfw_dir, SUBJECT[1]), photo(lfw_dir, OTHERS[0])
    composite = with_bystander(subject, bystander)
    second = jpeg(same_person)
    answer = (await verify(client, {"image1": composite, "image2": second})).json()
    assert answer["same"] is True, answer["distance"]
    face = answer["faces"]["image1"]
    assert face["faces_detected"] == 2 and face["box"]["x2"] < 610 and face["runner_up"]["x1"] > 600
    # The largest face is the bystander's: a different person.
    largest = (await verify(client, {"image1": composite, "image2": second}, {"face_policy": "largest"})).json()
    assert largest["same"] is False and largest["faces"]["image1"]["box"]["x1"] > 600


async def test_two_equally_likely_faces_are_ambiguous_and_reject_refuses_them(client, lfw_dir):
    subject = photo(lfw_dir, SUBJECT[0])
    twins = group(subject, subject)
    answer = (await verify(client, {"image1": twins, "image2": jpeg(subject)})).json()
    face = answer["faces"]["image1"]
    assert face["ambiguous"] is True and face["runner_up"] is not None and answer["same"] is True
    single = (await verify(client, {"image1": jpeg(subject), "image2": jpeg(subject)})).json()
    assert single["faces"]["image1"]["ambiguous"] is False and single["faces"]["image1"]["runner_up"] is None
    refused(await verify(client, {"image1": twins, "image2": jpeg(subject)}, {"face_policy": "reject"}), 422,
            "multiple_faces", "image1")


# -- face_policy=all ------------------------------------------------------------------------------


async def test_all_compares_one_face_with_every_face_of_the_other_image(client, lfw_dir):
    people = [photo(lfw_dir, OTHERS[0]), photo(lfw_dir, SUBJECT[1]), photo(lfw_dir, OTHERS[1])]
    probe = jpeg(photo(lfw_dir, SUBJECT[0]))
    answer = (await verify(client, {"image1": probe, "image2": group(*people)}, {"face_policy": "all"})).json()
    assert answer["matches_in"] == "image2" and len(answer["matches"]) == 3
    best, *rest = answer["matches"]
    assert best["same"] is True and 250 <= best["box"]["x1"] < 500  # the subject's tile
    assert not any(match["same"] for match in rest)
    assert [m["distance"] for m in answer["matches"]] == sorted(m["distance"] for m in answer["matches"])
    assert answer["same"] is True and answer["distance"] == best["distance"]
    assert answer["faces"]["image2"]["box"] == best["box"] and answer["faces"]["image2"]["faces_detected"] == 3


async def test_all_searches_image1_when_image2_is_an_embedding(client, lfw_dir):
    enrolled = await embedding_of(client, jpeg(photo(lfw_dir, SUBJECT[0])))
    scene = group(photo(lfw_dir, SUBJECT[1]), photo(lfw_dir, OTHERS[0]))
    response = await client.post("/verify", files={"image1": ("g.jpg", scene)},
                                 data={"embedding2": json.dumps(enrolled), "face_policy": "all"})
    answer = response.json()
    assert response.status_code == 200, answer
    assert answer["matches_in"] == "image1" and answer["same"] is True and answer["matches"][0]["box"]["x1"] < 250
    assert answer["faces"]["image2"] is None


async def test_all_needs_an_image(client, lfw_dir):
    enrolled = await embedding_of(client, jpeg(photo(lfw_dir, SUBJECT[0])))
    response = await client.post("/verify", json={"embedding1": enrolled, "embedding2": enrolled, "face_policy": "all"})
    refused(response, 422, "invalid_request", "face_policy=all")


# -- embeddings as inputs -------------------------------------------------------------------------


async def test_an_embedding_from_embed_is_sent_back_unchanged(client, lfw_dir):
    first, second = (jpeg(photo(lfw_dir, name)) for name in SUBJECT)
    enrolled = await embedding_of(client, first)
    assert enrolled["model"]["inference"] == "plain" and enrolled["dim"] == len(enrolled["embedding"])
    by_images = (await verify(client, {"image1": first, "image2": second})).json()

    as_json = await client.post("/verify", json={"embedding1": enrolled, "image2": __import__("base64").b64encode(second).decode()})
    as_text = await client.post("/verify", files={"image2": ("b.jpg", second)}, data={"embedding1": json.dumps(enrolled)})
    as_file = await client.post("/verify", files={"image2": ("b.jpg", second),
                                                  "embedding1": ("e.json", json.dumps(enrolled).encode())})
    for response in (as_json, as_text, as_file):
        answer = response.json()
        assert response.status_code == 200, answer
        assert answer["same"] is True and answer["faces"]["image1"] is None
        assert answer["distance"] == pytest.approx(by_images["distance"], abs=1e-5)

    other = await embedding_of(client, second)
    both = (await client.post("/verify", json={"embedding1": enrolled, "embedding2": other})).json()
    expected = np.linalg.norm(np.array(enrolled["embedding"]) - np.array(other["embedding"]))
    assert both["distance"] == pytest.approx(expected, abs=1e-5) and both["faces"] == {"image1": None, "image2": None}


def changed(given: dict, **fields: Any) -> dict:
    return {**given, **fields}


async def test_embeddings_that_cannot_be_compared_are_refused(client, lfw_dir):
    image = jpeg(photo(lfw_dir, SUBJECT[0]))
    good = await embedding_of(client, image)
    values = good["embedding"]

    def send(embedding: Any, **extra: Any):
        return client.post("/verify", json={"embedding1": embedding, "embedding2": good, **extra})

    cases = [
        (changed(good, model={**good["model"], "name": "another-encoder"}), "incompatible_embedding", "name"),
        (changed(good, model={**good["model"], "version": "0.9"}), "incompatible_embedding", "version"),
        (changed(good, model={**good["model"], "inference": "flip"}), "incompatible_embedding", "inference"),
        (changed(good, embedding=values[:-1], dim=len(values) - 1), "invalid_embedding", "values"),
        (changed(good, dim=len(values) + 1), "invalid_embedding", "dim"),
        (changed(good, embedding=[2 * v for v in values]), "invalid_embedding", "length"),
        (changed(good, embedding=[0.0] * len(values)), "invalid_embedding", "length"),
        (values, "invalid_embedding", "bare list"),
        ({"embedding": values}, "invalid_embedding", "model"),
        (changed(good, embedding=["a"] * len(values)), "invalid_embedding", "embedding1"),
        (changed(good, colour="blue"), "invalid_embedding", "colour"),
    ]
    for embedding, code, naming in cases:
        refused(await send(embedding), 422, code, naming)
    nan = json.dumps({"embedding1": changed(good, embedding=[float("nan")] + values[1:]), "embedding2": good})
    refused(await client.post("/verify", content=nan, headers={"Content-Type": "application/json"}), 422,
            "invalid_embedding", "NaN")
    refused(await client.post("/verify", files={"image2": ("b.jpg", image)}, data={"embedding1": "{not json"}), 422,
            "invalid_embedding", "embedding1")
    refused(await client.post("/verify", files={"image1": ("a.jpg", image), "image2": ("b.jpg", image)},
                              data={"embedding1": json.dumps(good)}), 422, "invalid_request", "not both")
    refused(await client.post("/verify", json={"embedding2": good}), 422, "invalid_request", "image1")


# -- options anywhere, never ignored ----------------------------------------------------------------


async def test_options_in_the_query_string_are_used_or_refused(client, lfw_dir):
    pair = {"image1": jpeg(photo(lfw_dir, SUBJECT[0])), "image2": jpeg(photo(lfw_dir, SUBJECT[1]))}
    answer = (await verify(client, pair, params={"operating_point": "far_1e-4"})).json()
    assert answer["operating_point"]["name"] == "far_1e-4"
    assert (await verify(client, pair, params={"threshold": "0.5"})).json()["threshold"] == 0.5
    same_twice = await verify(client, pair, {"threshold": "0.50"}, params={"threshold": "0.5"})
    assert same_twice.status_code == 200 and same_twice.json()["threshold"] == 0.5

    refused(await verify(client, pair, params={"threshold": "abc"}), 422, "invalid_request", "threshold")
    refused(await verify(client, pair, params={"threshold": "nan"}), 422, "invalid_request", "threshold")
    refused(await verify(client, pair, params={"operating_point": "far_1e-99"}), 422, "invalid_request", "far_1e-99")
    refused(await verify(client, pair, {"threshold": "0.4"}, params={"threshold": "0.5"}), 422, "invalid_request", "threshold")
    refused(await verify(client, pair, params={"operating_point": "far_1e-3", "threshold": "0.4"}), 422, "invalid_request",
            "not both")
    refused(await verify(client, pair, {"operating_point": "far_1e-3"}, params={"threshold": "0.4"}), 422, "invalid_request",
            "not both")
    refused(await verify(client, pair, params={"treshold": "0.4"}), 422, "invalid_request", "treshold")
    refused(await client.post("/verify?threshold=0.4&threshold=0.5", files=pair), 422, "invalid_request", "twice")
    refused(await verify(client, pair, params={"image1": "x"}), 422, "invalid_request", "body")
    refused(await verify(client, pair, {"colour": "blue"}), 422, "invalid_request", "colour")


async def test_embed_takes_its_option_in_the_query_string_too(client, lfw_dir):
    subject = photo(lfw_dir, SUBJECT[0])
    twins = group(subject, subject)
    response = await client.post("/embed?face_policy=reject", files=[("images", ("t.jpg", twins))])
    refused(response, 422, "multiple_faces", "images[0]")
    refused(await client.post("/embed?face_policy=all", files=[("images", ("t.jpg", twins))]), 422, "invalid_request",
            "face_policy")


async def test_openapi_documents_the_query_options_and_the_embedding_inputs(client):
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/verify"]["post"]
    assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == {"threshold", "operating_point",
                                                                                   "face_policy", "min_quality"}
    content = operation["requestBody"]["content"]
    assert {"embedding1", "embedding2"} <= set(content["multipart/form-data"]["schema"]["properties"])
    assert "embedding1" in content["application/json"]["schema"]["properties"]
    assert "$ref" not in json.dumps(content) or "#/components/" in json.dumps(content)
    assert {p["name"] for p in schema["paths"]["/embed"]["post"]["parameters"]} == {"face_policy", "min_quality"}


# -- a small face in a large photo ----------------------------------------------------------------


async def test_a_small_face_in_a_large_photo_is_found_and_verified(client, lfw_dir):
    """A 4000x3000 JPEG is decoded at a quarter of its size for detection; the face, 110 pixels in
    the photo and under 30 in what was decoded, is aligned from its region decoded again in full."""
    large = in_large_photo(photo(lfw_dir, SUBJECT[0]))
    answer = (await verify(client, {"image1": large, "image2": jpeg(photo(lfw_dir, SUBJECT[1]))})).json()
    assert answer["same"] is True, answer
    box = answer["faces"]["image1"]["box"]
    assert 2600 <= box["x1"] < box["x2"] <= 2850 and 900 <= box["y1"] < box["y2"] <= 1150  # full-size pixels
