"""`keras-vae explore` in a real browser: headless Chromium drives the page.

Once per suite (`any_backend`): the app runs as a user starts it (a
subprocess on a free loopback port, a pretrained model), and Selenium moves
a slider, draws a stroke, clicks the map and interpolates, checking that
pictures change and no error shows. Needs Debian's `chromium` and
`chromium-driver`: `.ci/run` installs them and sets
`KERAS_VAE_BROWSER=required`, under which their absence fails the test;
elsewhere it is skipped without them.
"""

import base64
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import SCRIPTS, child_environment, ROOT

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
HAVE_BROWSER = bool(CHROMIUM and DRIVER)

pytestmark = [
    pytest.mark.any_backend,
    pytest.mark.slow,
    pytest.mark.skipif(
        not HAVE_BROWSER and os.environ.get("KERAS_VAE_BROWSER") != "required",
        reason="no chromium and chromedriver (apt install chromium chromium-driver)",
    ),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The URL of `explore.py --pretrained mlp-dynamic`, running until the tests end."""
    cache = tmp_path_factory.mktemp("explore-cache")
    process = subprocess.Popen(
        [sys.executable, SCRIPTS / "explore.py", "--pretrained", "mlp-dynamic", "--port", "0", "--cache-dir", cache],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env=child_environment("tensorflow"),
    )
    lines, deadline = [], time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        if found:
            break
    else:
        found = None
    assert found, "".join(lines)
    yield found.group(1)
    process.send_signal(signal.SIGINT)  # Ctrl-C: the app stops cleanly
    rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0 and "explore.py: stopped" in rest, "".join(lines) + rest


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert HAVE_BROWSER, "CI installs chromium and chromium-driver (.ci/run)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={profile}", "--window-size=1000,1900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def picture(driver, element_id):
    """The grey levels of an `<img>`'s PNG data URL (None before it has one)."""
    source = driver.find_element("id", element_id).get_attribute("src") or ""
    if not source.startswith("data:image/png;base64,"):
        return None
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))), dtype="float32") / 255


def settle(driver, timeout=60):
    """Waits until the page has no request in flight."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.body.dataset.ready === '1' && document.body.dataset.busy === '0'")
    )


def test_the_page_answers_a_user(app_url, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    browser.get(app_url)
    settle(browser)
    assert "mlp-dynamic" in browser.title
    before = picture(browser, "slider-image")
    assert before is not None and before.max() > 0.5  # the sliders' image at the center

    slider = browser.find_elements("css selector", "#sliders input")[0]
    ActionChains(browser).drag_and_drop_by_offset(slider, slider.size["width"] // 3, 0).perform()
    settle(browser)
    after = picture(browser, "slider-image")
    assert float(slider.get_attribute("value")) > 0.5
    assert np.abs(after - before).max() > 0.2  # the image followed the slider

    pad = browser.find_element("id", "pad")
    (
        ActionChains(browser).move_to_element_with_offset(pad, -55, -65).click_and_hold()
        .move_by_offset(55, 0).move_by_offset(55, 0).move_by_offset(-30, 70).move_by_offset(-30, 70)
        .release().perform()
    )  # a "7"
    settle(browser)
    seen, rebuilt = picture(browser, "draw-input"), picture(browser, "draw-reconstruction")
    assert seen is not None and seen.mean() > 0.02 and rebuilt is not None
    seen, rebuilt = (image.reshape(28, 4, 28, 4).mean((1, 3)) for image in (seen, rebuilt))
    assert np.corrcoef(seen.ravel(), rebuilt.ravel())[0, 1] > 0.6  # the stroke comes back
    assert "nats" in browser.find_element("id", "draw-nll").text

    ActionChains(browser).move_to_element(browser.find_element("id", "map")).click().perform()
    settle(browser)
    assert picture(browser, "map-image") is not None and picture(browser, "map-nearest") is not None
    browser.find_element("id", "map-to-b").click()
    browser.find_element("id", "interpolate").click()
    settle(browser)
    assert picture(browser, "path-spherical").shape[1] >= 10 * 28 * 4
    assert browser.find_element("id", "error").text == ""
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot = os.environ.get("KERAS_VAE_SCREENSHOT") or tmp_path / "explore.png"
    browser.save_screenshot(str(screenshot))


def test_a_bad_upload_is_a_message_in_the_page(app_url, browser, tmp_path):
    browser.get(app_url)
    settle(browser)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"these are notes, not a picture")
    browser.find_element("id", "upload").send_keys(str(bad))
    settle(browser)
    assert "not a picture that can be read" in browser.find_element("id", "error").text
