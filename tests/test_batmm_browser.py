"""The Multimodal BHB page in a real browser: upload a spectrum and a cutout, get the BHB
probability and the attention figures; a broken upload gives a clear message."""
import time

import pytest

from astrocore.data.simulators.bhb import simulate_bhb
from astrocore.methods.batmm import BatmmConfig, fit

from test_browser import _require_browser, _screenshot, _wait, streamlit_server
from test_batmm_page import logic

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def batmm_server(tmp_path_factory):
    _require_browser()
    home = tmp_path_factory.mktemp("batmm-browser")
    dataset = simulate_bhb(100, seed=9, use_cache=False)
    fit(dataset, BatmmConfig.preset("fast", encoder_epochs=1, fusion_epochs=1, batch_size=32),
        runs_root=home / "runs", run_id="batmm-tiny",
        data_source={"kind": "simulator", "generator": "bhb", "params": {"n_stars": 100, "seed": 9, "use_cache": False}})
    with streamlit_server(home) as url:
        yield url, home


@pytest.fixture(scope="module")
def driver(batmm_server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    import tempfile

    from test_browser import CHROMEDRIVER, CHROMIUM

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--window-size=1500,1300", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(argument)
    instance = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield instance
    instance.quit()


def _page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def test_upload_a_star_in_a_real_browser(batmm_server, driver):
    from selenium.webdriver.common.by import By

    url, home = batmm_server
    driver.get(url + "/multimodal")
    assert _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, 'input[type="file"]')) >= 2, 120), \
        "the page did not show its two upload fields"
    spectrum_input, cutout_input = driver.find_elements(By.CSS_SELECTOR, 'input[type="file"]')[:2]
    spectrum_input.send_keys(str(logic.EXAMPLE_SPECTRUM))
    cutout_input.send_keys(str(logic.EXAMPLE_CUTOUT))
    assert _wait(lambda: "P(BHB), calibrated" in _page_text(driver), 120), _page_text(driver)[-1500:]
    assert _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) >= 3, 60)
    _screenshot(driver, "batmm_upload.png")

    broken = home / "broken.fits"
    broken.write_bytes(b"this is not a FITS file")
    driver.get(url + "/multimodal")
    assert _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, 'input[type="file"]')) >= 2, 120)
    driver.find_elements(By.CSS_SELECTOR, 'input[type="file"]')[0].send_keys(str(broken))
    assert _wait(lambda: "Could not read the upload" in _page_text(driver), 60), _page_text(driver)[-1500:]
    time.sleep(0.5)
    _screenshot(driver, "batmm_bad_upload.png")
