"""The Nebulae page in a real browser: upload the example catalogue, get classes, a BPT diagram of
the classified nebulae, the rows with reasons and a download button."""
import time
from pathlib import Path

import pytest
from test_browser import SHOTS, _require_browser, _screenshot, _wait, browser, streamlit_server  # noqa: F401

from astrocore.app import nebulae as logic
from astrocore.methods.dann.config import DannConfig
from astrocore.methods.dann.fit import fit

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "assets" / "example_nebulae_catalogue.csv"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _require_browser()
    home = tmp_path_factory.mktemp("nebulae-browser")
    source = logic.nebula_source(n=400, seed=0)
    fit(logic.simulate(source), DannConfig.preset("fast", epochs=2, validator_objects=60), runs_root=home / "runs",
        run_id="dann-browser", data_source=source)
    with streamlit_server(home) as url:
        yield url


def test_upload_catalogue_and_classify(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server + "/nebulae")
    assert _wait(lambda: any(t.text.strip() == "Classify a catalogue"
                             for t in browser.find_elements(By.CSS_SELECTOR, "[role=tab]")), 120)
    for tab in browser.find_elements(By.CSS_SELECTOR, "[role=tab]"):
        if tab.text.strip() == "Classify a catalogue":
            tab.click()
    upload = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, 'input[type="file"]'), 60)
    assert upload, "no file uploader on the Classify tab"
    upload[0].send_keys(str(EXAMPLE))
    text = _wait(lambda: "could not be classified" in browser.page_source and "Download the classified table"
                 in browser.page_source, 120)
    assert text, "the upload did not produce a classified table"
    plots = _wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) >= 3, 60)
    assert plots
    legend = browser.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(p => p.data.map(t => t.name));")
    assert "Kewley 2001" in legend and any(name in legend for name in ("HII", "PN", "SNR"))
    time.sleep(0.5)
    _screenshot(browser, "nebulae_upload.png")
