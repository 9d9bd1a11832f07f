"""Uploading cutouts on the Self-supervised images page in a real browser (Chromium + selenium)."""
import time
from pathlib import Path

import pytest

from astrocore.data.simulators.cutouts import label_set, simulate_cutouts
from astrocore.methods.ssl.config import SSLConfig
from astrocore.methods.ssl.fit import fit
from test_browser import CHROMEDRIVER, CHROMIUM, _require_browser, _screenshot, _wait, streamlit_server

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
TINY = dict(epochs=1, head_epochs=1, min_steps=2, batch_size=32, width=4, head_hidden=8, val_objects=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _require_browser()
    home = tmp_path_factory.mktemp("ssl-browser")
    mp = pytest.MonkeyPatch()
    mp.setenv("ASTROCORE_CACHE", str(home / "cache"))
    pretext = fit(simulate_cutouts(70, seed=31, r_range=(13.0, 15.5), n_workers=1),
                  SSLConfig.preset("fast", **TINY), runs_root=home / "runs")
    fit(label_set("star_galaxy_quasar", 60, seed=32, n_workers=1),
        SSLConfig.preset("fast", stage="downstream", scheme="frozen_pretext", **TINY), runs_root=home / "runs",
        pretext_run=pretext)
    mp.undo()
    with streamlit_server(home) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--window-size=1500,1300", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def test_upload_cutouts_in_a_real_browser(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    def body() -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    browser.get(server + "/images")
    assert _wait(lambda: "Cutout files" in body(), 90), body()[-500:]
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"SIMPLE  = not really a FITS file")
    upload = browser.find_element(By.CSS_SELECTOR, 'input[type="file"]')
    upload.send_keys(f"{ROOT / 'assets' / 'example_cutout.fits'}\n{broken}")
    shown = _wait(lambda: "Download the table (CSV)" in body() and "broken.fits" in body(), 90)
    assert shown, body()[-800:]
    assert "broken.fits: HDU 0's header is truncated" in body()  # the reader names the problem
    started = time.time()
    assert _wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) >= 2, 30)
    assert time.time() - started < 30
    _screenshot(browser, "ssl_01_upload.png")
