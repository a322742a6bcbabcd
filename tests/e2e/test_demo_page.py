"""The demo page in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven by
Selenium), against the real service on loopback with the shipped weights: a verification read off
the page, the drawn boxes against the API's own, an error, the API key, enrolled subjects, the
camera (Chromium's fake device), and the page's security headers.

FACEVER_DEMO_SCREENSHOT=docs/demo.png writes the README's screenshot after the verification.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.server import running_server
from tests.integration.real_service import DETECTORS_DIR, ENCODER_DIR, skip_unless_shipped_model

pytestmark = [pytest.mark.data, pytest.mark.slow]

SAME = ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg")
OTHER = "Colin_Powell/Colin_Powell_0001.jpg"
CHROMIUM = os.environ.get("FACEVER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FACEVER_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    webdriver = pytest.importorskip("selenium.webdriver")
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(binary):
            pytest.skip(f"{binary} not found (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--disable-gpu", "--window-size=1100,1500",
                     "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox needs an unprivileged user
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def serve(tmp_path: Path, **settings: str):
    skip_unless_shipped_model()
    env = {"FACEVER_WEIGHTS_DIR": str(ENCODER_DIR), "FACEVER_DETECTORS_DIR": str(DETECTORS_DIR),
           "FACEVER_STORAGE_URL": f"sqlite:///{tmp_path}/facever.sqlite3", **settings}
    return running_server(env)


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("demo")) as server:
        yield server.base_url


def wait(browser, condition, timeout_s: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout_s).until(lambda driver: condition(driver))


def open_page(browser, base_url: str, ready: bool = True) -> None:
    browser.get(f"{base_url}/demo")
    if ready:
        wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))


def choose(browser, field: int, path: Path) -> None:
    browser.find_element("id", f"file{field}").send_keys(str(path))


def click(browser, element_id: str) -> None:
    browser.find_element("id", element_id).click()


def result(browser) -> dict:
    """What the page shows once an action is done: the verdict, or the error's code."""
    wait(browser, lambda d: d.execute_script(
        "return !document.querySelector('button').disabled && "
        "(document.getElementById('verdict').textContent !== '' || !document.getElementById('error').hidden)"))
    return browser.execute_script("""
        const error = document.getElementById('error');
        return {verdict: document.getElementById('verdict').textContent,
                same: document.getElementById('verdict').dataset.same,
                error: error.hidden ? null : error.dataset.code,
                message: error.textContent,
                curl: document.getElementById('curl').textContent,
                ticks: document.querySelectorAll('#ticks .tick').length,
                boxes: [...document.querySelectorAll('canvas.overlay')].map(c => JSON.parse(c.dataset.boxes || '[]'))};
    """)


def test_a_verification_read_off_the_page(browser, service, lfw_dir) -> None:
    open_page(browser, service)
    first, second = (lfw_dir / "images" / name for name in SAME)
    choose(browser, 1, first)
    choose(browser, 2, second)
    click(browser, "verify")
    shown = result(browser)
    assert shown["error"] is None, shown["message"]
    assert shown["verdict"] == "Same person" and shown["same"] == "true"

    api = httpx.post(f"{service}/verify", files={"image1": ("a.jpg", first.read_bytes()),
                                                 "image2": ("b.jpg", second.read_bytes())}, timeout=60).json()
    for drawn, side in zip(shown["boxes"], ("image1", "image2")):
        assert drawn[0] == api["faces"][side]["box"]  # the page draws the API's boxes, in the photo's pixels
    info = httpx.get(f"{service}/info").json()
    assert shown["ticks"] == len(info["service"]["operating_points"])  # every operating point on the bar
    assert "-F image1=@Aaron_Peirsol_0001.jpg -F image2=@Aaron_Peirsol_0002.jpg" in shown["curl"]
    # Nothing was fetched from anywhere but this service.
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert set(origins) <= {service}
    if os.environ.get("FACEVER_DEMO_SCREENSHOT"):
        browser.save_screenshot(os.environ["FACEVER_DEMO_SCREENSHOT"])

    choose(browser, 2, lfw_dir / "images" / OTHER)
    click(browser, "verify")
    assert result(browser)["verdict"] == "Different people"


def test_errors_show_the_api_code(browser, service, tmp_path) -> None:
    open_page(browser, service)
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not an image")
    choose(browser, 1, not_an_image)
    choose(browser, 2, not_an_image)
    click(browser, "verify")
    shown = result(browser)
    assert shown["error"] == "invalid_image" and "image1" in shown["message"]


def test_the_camera(browser, service) -> None:
    """Chromium's fake camera shows a test pattern: taken as photo 1, it reaches the API, which
    finds no face in it."""
    open_page(browser, service)
    browser.find_element("css selector", "#slot1 .camera").click()
    wait(browser, lambda d: d.execute_script("return document.querySelector('#slot1 video').videoWidth > 0"))
    browser.find_element("css selector", "#slot1 .snap").click()
    wait(browser, lambda d: d.execute_script("return document.querySelector('#slot1 .photo').naturalWidth > 0"))
    choose(browser, 2, Path(__file__))  # any second file: the first is refused before it is read
    click(browser, "verify")
    assert result(browser)["error"] in ("no_face_detected", "invalid_image")


def test_enrol_verify_and_delete_a_subject(browser, service, lfw_dir) -> None:
    open_page(browser, service)
    subject = browser.find_element("id", "subject")
    subject.clear()
    subject.send_keys("aaron")
    choose(browser, 1, lfw_dir / "images" / SAME[0])
    click(browser, "enrol")
    assert result(browser)["verdict"].startswith("Enrolled: aaron now has 1 face")
    choose(browser, 1, lfw_dir / "images" / SAME[1])
    click(browser, "verify-subject")
    shown = result(browser)
    assert shown["verdict"] == "This is aaron" and shown["ticks"] == 3  # the points calibrated for 1 template
    click(browser, "search")
    assert result(browser)["verdict"] == "This is aaron"
    choose(browser, 1, lfw_dir / "images" / OTHER)
    click(browser, "verify-subject")
    assert result(browser)["verdict"] == "Not aaron"
    click(browser, "search")
    assert result(browser)["verdict"] == "Nobody enrolled"
    click(browser, "delete-subject")
    assert result(browser)["verdict"] == "Deleted: 1 subject, 1 face(s)"
    click(browser, "verify-subject")
    assert result(browser)["error"] == "subject_not_found"


def test_the_api_key_path(browser, lfw_dir, tmp_path) -> None:
    with serve(tmp_path, FACEVER_API_KEYS="s3cret") as server:
        open_page(browser, server.base_url, ready=False)
        assert result(browser)["error"] == "unauthorized"
        key = browser.find_element("id", "api-key")
        key.send_keys("s3cret")
        browser.find_element("id", "gallery").click()  # leaving the field fires its change event
        wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
        for field, name in enumerate(SAME, start=1):
            choose(browser, field, lfw_dir / "images" / name)
        click(browser, "verify")
        shown = result(browser)
        assert shown["verdict"] == "Same person"
        assert '-H "X-API-Key: $FACEVER_API_KEY"' in shown["curl"] and "s3cret" not in shown["curl"]


def test_security_headers_and_the_switch(tmp_path) -> None:
    with serve(tmp_path) as server:
        page = httpx.get(f"{server.base_url}/demo")
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
        assert "<script src=\"/demo/demo.js\"" in page.text and "http" not in page.text.split("<body>")[0]
        assert httpx.get(f"{server.base_url}/demo/other.js").status_code == 404
    with serve(tmp_path, FACEVER_DEMO="false") as server:
        response = httpx.get(f"{server.base_url}/demo")
        assert response.status_code == 404 and json.loads(response.text)["error"]["code"] == "not_found"
