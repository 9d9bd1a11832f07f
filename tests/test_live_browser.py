"""The Generate view's browser decoder (astrocore/app/live_static/live.js) run in Chromium equals
``Disentangler.decode``: for every decoder configuration (random weights) and for the shipped APOGEE
model, at conditions inside and outside the training range. The page and decoder files are served
by a plain local HTTP server, as Streamlit serves them to the component."""
import contextlib
import functools
import http.server
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from astrocore.app import common as app_common
from astrocore.app import live, live_decoder
from test_live_decoder import CONFIGS, conditions, random_model

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

DECODE = """
const done = arguments[arguments.length - 1];
const [url, latents, cps, pixels] = [arguments[0], arguments[1], arguments[2], arguments[3]];
AstroLive.loadDecoder(url).then(decoder => {
  done({header: decoder.header.conditional,
        flux: latents.map((z, i) => Array.from(AstroLive.decode(decoder, z, cps[i], pixels)))});
}).catch(error => done({error: String(error)}));
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder served on localhost with live.js and a test page; yields (folder, base URL)."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    pytest.importorskip("selenium")
    folder = tmp_path_factory.mktemp("live")
    shutil.copyfile(live.STATIC / "live.js", folder / "live.js")
    (folder / "page.html").write_text("<!doctype html><html><body><div id=root></div>"
                                      "<script src='live.js'></script></body></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def page(served):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(60)
    driver.get(served[1] + "/page.html")
    with contextlib.ExitStack() as stack:
        stack.callback(driver.quit)
        yield driver


def browser_decode(page, served, model, name: str, latent: torch.Tensor, cp: torch.Tensor, pixels=None) -> np.ndarray:
    (served[0] / f"{name}.bin").write_bytes(live_decoder.decoder_file(model))
    result = page.execute_async_script(DECODE, f"{name}.bin", latent.tolist(), cp.tolist(), pixels)
    assert "error" not in result, result
    assert result["header"] == list(model.config.conditional)
    return np.array(result["flux"], dtype=np.float64)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_browser_decoder_equals_torch(page, served, name):
    model = random_model(**dict(CONFIGS[name]))
    latent, cp = torch.randn(5, model.config.latent_dim), conditions(model, 5)
    with torch.no_grad():
        expected = model.decode(latent, cp).numpy()
    got = browser_decode(page, served, model, f"model{list(CONFIGS).index(name)}", latent, cp)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max(), np.abs(got - expected).max()


def test_browser_decoder_of_the_shipped_model(page, served, tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROCORE_SHIPPED_RUNS", "1")
    installed = app_common.install_shipped_runs(tmp_path / "runs")
    if "default-disentangle-apogee" not in installed:
        pytest.skip("the shipped APOGEE disentangler is missing")
    run = app_common.load_run(tmp_path / "runs" / "default-disentangle-apogee")
    model = run.model
    torch.manual_seed(0)
    latent = torch.randn(3, model.config.latent_dim)
    low, high = model.cp_min, model.cp_max
    cp = torch.stack([low + (high - low) * f for f in (0.5, 0.1, 1.2)])  # the last one extrapolates
    with torch.no_grad():
        expected = model.decode(latent, cp).numpy()
    got = browser_decode(page, served, model, "shipped", latent, cp)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max(), np.abs(got - expected).max()
    # Only the plotted pixels (the Generate view's path), with -1 at a detector gap.
    pixels = [0, 5, -1, 4000, 7213]
    some = browser_decode(page, served, model, "shipped", latent[:1], cp[:1], pixels)[0]
    assert np.isnan(some[2])
    assert np.allclose(some[[0, 1, 3, 4]], expected[0][[0, 5, 4000, 7213]], atol=1e-4 * np.abs(expected).max())
