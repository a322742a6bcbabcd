"""The menu's lighter cards through HTTP on real LFW faces: each selected by its bare name
(FACEVER_WEIGHTS_DIR), named in /info with its own calibration, and deciding a same-person and a
different-person pair at its own operating point."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.card import load_card
from model.evaluation.protocols import read_pairs
from tests.integration.real_service import DETECTORS_DIR, real_service

pytestmark = [pytest.mark.anyio, pytest.mark.data]

MENU = ("sface-2021dec-yunet-int8", "dlib-resnet-v1-yunet-int8")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("name", MENU)
async def test_a_menu_card_is_chosen_by_name_and_decides_with_its_own_calibration(name, lfw_dir: Path):
    card = load_card(DETECTORS_DIR / name)
    assert (card.precision, card.inference.engine, card.detector) == ("int8", "openvino", "yunet+mtcnn")
    pairs = [pair for pair in read_pairs(lfw_dir / "pairs.txt") if pair.fold == 0]
    same, different = next(p for p in pairs if p.same), next(p for p in pairs if not p.same)
    async with real_service(weights_dir=Path(name)) as (_, client):
        info = (await client.get("/info")).json()
        assert info["model"]["name"] == name
        for pair, expected in ((same, True), (different, False)):
            files = {f"image{i}": (f"{i}.jpg", (lfw_dir / "images" / path).read_bytes())
                     for i, path in ((1, pair.first), (2, pair.second))}
            answer = await client.post("/verify", files=files)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["same"] is expected and body["model"]["name"] == name
            point = body["operating_point"]
            assert body["threshold"] == pytest.approx(
                card.calibration_for(False).operating_points[point["name"]].threshold)
