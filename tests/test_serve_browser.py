"""The page of ``rnncap serve`` in a real browser: Debian's headless Chromium through Selenium and Debian's
chromedriver (never a downloaded browser). The example photos go in through the file input; their captions, the
beam's candidates and a word's attention map must appear; a file that is no photo gets a plain-words error.

A screenshot of the page with a map shown is written to runs/serve/screenshot.png (runs/ is git-ignored) for a
person to look at. Skipped, with the reason, when the browser, its driver or selenium is missing (`make install`
installs them on Debian: apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from serve_helpers import PHOTOS, running_server

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "runs" / "serve" / "screenshot.png"
NOT_A_PHOTO = REPO / "examples" / "photos" / "README.md"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="the browser test needs Debian's chromium and chromium-driver (/usr/bin/chromium and "
        "/usr/bin/chromedriver): `make install` runs apt-get install -y chromium chromium-driver as root",
    ),
]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1100,1900")
    # An explicit driver path: Selenium Manager is never asked to find (or download) a driver or a browser.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    with running_server(tmp_path_factory.getbasetemp() / "rnncap-cache") as server:
        browser.get(server.url + "/")
        yield browser


def wait_for(driver, condition, timeout: float = 180):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d))


def canvas_pixels(driver, card) -> str:
    return driver.execute_script("return arguments[0].querySelector('canvas').toDataURL()", card)


def test_uploaded_photos_get_captions_candidates_and_attention_maps(page) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    wait_for(page, lambda d: "efficientnet-lite2" in d.find_element(By.ID, "serving").text, 60)
    assert "flickr8k-coco-attention" in page.find_element(By.ID, "serving").text
    page.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in PHOTOS))
    wait_for(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card.done")) == len(PHOTOS))

    cards = page.find_elements(By.CSS_SELECTOR, ".card")
    assert {card.find_element(By.CLASS_NAME, "name").text for card in cards} == {p.name for p in PHOTOS}
    for card in cards:
        words = card.find_elements(By.CSS_SELECTOR, ".caption .word")
        assert len(words) >= 3 and all(word.text for word in words)
        candidates = card.find_elements(By.CSS_SELECTOR, ".candidates li")
        assert len(candidates) == 3 and "log p = -" in candidates[0].text
        assert candidates[0].text.startswith(" ".join(word.text for word in words))
        assert "ms to caption" in card.find_element(By.CLASS_NAME, "timing").text

    card = next(c for c in cards if c.find_element(By.CLASS_NAME, "name").text == "bus.jpg")
    plain = canvas_pixels(page, card)
    words = card.find_elements(By.CSS_SELECTOR, ".caption .word")
    ActionChains(page).move_to_element(words[1]).perform()  # hover: the map of the second word
    wait_for(page, lambda d: card.get_attribute("data-map-word") == words[1].text, 10)
    hovered = canvas_pixels(page, card)
    assert hovered != plain  # the map is drawn over the photo
    words[3].click()  # click: the map stays when the pointer leaves
    ActionChains(page).move_to_element(page.find_element(By.TAG_NAME, "h1")).perform()
    wait_for(page, lambda d: card.get_attribute("data-map-word") == words[3].text, 10)
    assert canvas_pixels(page, card) not in (plain, hovered)
    page.execute_script("arguments[0].scrollIntoView()", page.find_element(By.TAG_NAME, "header"))
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert page.save_screenshot(str(SCREENSHOT)) and SCREENSHOT.stat().st_size > 10_000


def test_a_file_that_is_no_photo_gets_a_plain_error_in_the_page(page, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    notes = tmp_path / "notes.jpg"
    shutil.copy(NOT_A_PHOTO, notes)
    page.find_element(By.ID, "files").send_keys(str(notes))
    wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, ".card.failed"), 60)
    error = page.find_element(By.CSS_SELECTOR, ".card.failed .error").text
    assert (
        error == "Could not caption this photo: notes.jpg is not an image (JPEG, PNG, WebP, GIF, BMP or TIFF expected)"
    )
