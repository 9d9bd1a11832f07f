"""Latency budgets of issue 17, measured in a real browser (Debian's Chromium through selenium).

    python benchmarks/latency.py                      # both measurements, JSON to benchmarks/latency.json
    python benchmarks/latency.py --only spectra --moves 30
    python benchmarks/latency.py --home /tmp/latbench  # keep (and reuse) the runs and the data cache

1. Spectra page, Generate view: a Teff slider step (a key press on the slider) to the redrawn chart
   (the first animation frame after the chart shows the new value); the median over ``--moves``
   steps, each to a new value (nothing cached), at the view's default zoom and at "Full range".
   Budget: <= 150 ms median on an idle 2-core machine. The sliders and chart are a live component
   (astrocore/app/live.py, an iframe): the step is decoded and drawn in the browser, so no request
   lies on this path; ``settled_ms`` is the key press to the frame after the server's answer (the
   true spectrum at the new value) was drawn, and ``browser_decode_ms`` the decoder's own time.
2. Explorer: a lasso drawn with the mouse on the WebGL scatter of a 10,000-object run, from the
   mouse release to the first animation frame after the linked spectra chart shows the new
   selection; the median over ``--lassos`` lassos of different sizes. Budget: <= 0.5 s. The scatter
   is a live component too: a lasso sends back its shape (a few hundred bytes), and the scatter is
   not sent again when only the selection changed.

Each explorer step (and, for the Spectra page, the traffic up to ``settled_ms``) is also split by the page's own websocket traffic (a wrapper installed before the app
loads): ``to_request`` (key press or mouse release to the rerun request leaving the browser),
``server`` (request to the last message of the rerun arriving: Streamlit's rerun, the figure
building and the transfer), ``render`` (last message to the redrawn frame: protobuf/JSON decoding
and plotly's drawing) and the bytes received. A server-side profile (decode, figure building,
serialisation, sizes) is measured in-process on the same model.

The Spectra page uses the model shipped in ``astrocore/shipped/`` when there is one (installed by
the app on its first visit, as for a user), else a small APOGEE-like model trained here with the
CLI. The explorer gets its own runs folder with one disentangler trained for one epoch on 48
APOGEE-like chemistries (10,080 spectra), built here. Nothing here is a test: the figures depend
on the machine's load, which is reported beside them.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SHIPPED = ROOT / "astrocore" / "shipped"

# ---------------------------------------------------------------------------- browser scripts
# Installed before any page script: records the time and size of every websocket message.
WS_PROBE = """
(() => {
  const Original = window.WebSocket;
  window.__ws = [];
  function size(d) { return d == null ? 0 : (d.byteLength !== undefined ? d.byteLength : (d.size !== undefined ? d.size : d.length)); }
  class Probe extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', e => window.__ws.push({t: performance.now(), dir: 'in', n: size(e.data)}));
    }
    send(d) { window.__ws.push({t: performance.now(), dir: 'out', n: size(d)}); return super.send(d); }
  }
  window.WebSocket = Probe;
})();
"""

SPECTRUM_STATE = """
const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
const gd = plots.find(p => p.layout && p.layout.meta && p.layout.meta.values);
if (!gd) { return null; }
const points = (gd._fullData || []).reduce((s, t) => s + (t._length || 0), 0);
return {values: gd.layout.meta.values, points: points, traces: gd.data.length,
        range: gd.layout.xaxis && gd.layout.xaxis.range};
"""

WAIT_FOR_REDRAW = """
const done = arguments[arguments.length - 1];
const before = arguments[0];
const started = performance.now();
function check() {
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
  const gd = plots.find(p => p.layout && p.layout.meta && p.layout.meta.values);
  if (gd && gd.layout.meta.values.teff !== before && window.__t0 !== null) {
    requestAnimationFrame(() => done({t0: window.__t0, t1: performance.now(), teff: gd.layout.meta.values.teff}));
  } else if (performance.now() - started > 20000) {
    done(null);
  } else {
    setTimeout(check, 2);
  }
}
check();
"""

# Inside the live component's iframe: when the server's answer to the step has been drawn.
WAIT_FOR_SETTLE = """
const done = arguments[arguments.length - 1];
const [teff, t0] = [arguments[0], arguments[1]];
const started = performance.now();
function check() {
  const server = window.__astrocoreServer;
  if (server && server.t >= t0 && server.values.teff === teff) {
    requestAnimationFrame(() => done({t1: performance.now()}));
  } else if (performance.now() - started > 20000) {
    done(null);
  } else {
    setTimeout(check, 2);
  }
}
check();
"""

# The explorer's scatter is a live component (an iframe of the same origin, whose document is readable).
FIND_SCATTER = """
const found = Array.from(document.querySelectorAll('iframe[src*="/component/astrocore.app.live"]')).map(frame => {
  const doc = frame.contentDocument, gd = doc && doc.getElementById('chart');
  return gd && gd.layout && gd.layout.meta && gd.layout.meta.explorer ? {frame: frame, gd: gd} : null;
}).find(x => x);
"""

EXPLORER_CHART = FIND_SCATTER + """
if (!found) { return null; }
const gd = found.gd, drag = gd.querySelector('.nsewdrag');
if (!drag) { return null; }
const f = found.frame.getBoundingClientRect(), r = drag.getBoundingClientRect();
return {left: f.left + r.left, top: f.top + r.top, width: r.width, height: r.height, n: gd.layout.meta.n,
        shown: gd.layout.meta.shown, webgl: gd.data.some(t => t.type === 'scattergl')};
"""

WAIT_FOR_LINKED = """
const done = arguments[arguments.length - 1];
const before = arguments[0];
const started = performance.now();
function check() {
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
  const gd = plots.find(p => p.layout && p.layout.meta && p.layout.meta.linked === 'spectra');
  if (gd && window.__t0 !== null && gd.layout.meta.n_selected > 0 && gd.layout.meta.n_selected !== before) {
    requestAnimationFrame(() => done({t0: window.__t0, t1: performance.now(), n: gd.layout.meta.n_selected}));
  } else if (performance.now() - started > 20000) {
    done(null);
  } else {
    setTimeout(check, 2);
  }
}
check();
"""


# ---------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def streamlit_server(home: Path, runs: Path, shipped: bool):
    port = free_port()
    env = {**os.environ, "ASTROCORE_RUNS": str(runs), "ASTROCORE_CACHE": str(home / "cache"),
           "ASTROCORE_SHIPPED_RUNS": "1" if shipped else "0"}
    log_file = open(home / f"streamlit-{runs.name}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"streamlit did not start; see {log_file.name}")
        yield url
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        log_file.close()


@contextlib.contextmanager
def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1500,1300", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(60)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WS_PROBE})
    try:
        yield driver
    finally:
        driver.quit()


def wait(predicate, timeout: float, poll: float = 0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    return None


def body(driver) -> str:
    return driver.find_element("tag name", "body").text


def traffic(driver, t0: float, t1: float) -> dict:
    """Split [t0, t1] (ms, performance.now) by the websocket messages in between: the first
    message sent after t0 is the rerun request, the last one received before t1 ends the rerun."""
    messages = [m for m in driver.execute_script("return window.__ws || [];") if t0 - 1 <= m["t"] <= t1 + 1]
    sent = [m for m in messages if m["dir"] == "out"]
    received = [m for m in messages if m["dir"] == "in" and (not sent or m["t"] >= sent[0]["t"])]
    if not sent or not received:
        return {"messages_in": len(received), "bytes_in": sum(m["n"] for m in received)}
    request, last = sent[0]["t"], received[-1]["t"]
    return {"to_request_ms": round(request - t0, 1), "server_ms": round(last - request, 1),
            "render_ms": round(t1 - last, 1), "messages_in": len(received), "bytes_out": int(sent[0]["n"]),
            "bytes_in": int(sum(m["n"] for m in received)), "largest_in": int(max(m["n"] for m in received))}


def summary(steps: list[dict]) -> dict:
    def median(name):
        values = [s[name] for s in steps if name in s]
        return round(statistics.median(values), 1) if values else None

    total = [s["ms"] for s in steps]
    return {"median_ms": median("ms"), "min_ms": round(min(total), 1), "max_ms": round(max(total), 1),
            "n": len(steps), "median_to_request_ms": median("to_request_ms"), "median_server_ms": median("server_ms"),
            "median_render_ms": median("render_ms"), "median_bytes_in": median("bytes_in"),
            "median_bytes_out": median("bytes_out"),
            "steps_ms": [round(t, 1) for t in total]}


def run_cli(args: list[str], home: Path) -> None:
    env = {**os.environ, "ASTROCORE_CACHE": str(home / "cache"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    log("$ astrocore " + " ".join(args))
    with open(home / "cli.log", "ab") as output:
        subprocess.run([sys.executable, "-m", "astrocore", *args], cwd=ROOT, env=env, check=True, stdout=output,
                       stderr=output)


def finished(runs: Path) -> list[Path]:
    return [p for p in sorted(runs.glob("*")) if (p / "run.json").exists()
            and json.loads((p / "run.json").read_text()).get("status", "done") == "done"]


# ---------------------------------------------------------------------------- 1. Spectra page
def choose_zoom(driver, option: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    for box in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSelectbox"]'):
        if box.text.startswith("Zoom on"):
            field = box.find_element(By.CSS_SELECTOR, "input")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", field)
            field.click()
            field.send_keys(option)
            field.send_keys(Keys.ENTER)
            return
    raise RuntimeError("no 'Zoom on' select box")


def live_frame(driver):
    """Switch into the Generate view's live component (an iframe); None when it is not there yet."""
    from selenium.webdriver.common.by import By

    driver.switch_to.default_content()
    frames = driver.find_elements(By.CSS_SELECTOR, 'iframe[src*="/component/astrocore.app.live"]')
    if not frames:
        return None
    driver.switch_to.frame(frames[0])
    return frames[0]


def in_frame(driver, script: str, *args):
    """``script`` run inside the live component's iframe (None when there is none)."""
    try:
        return driver.execute_script(script, *args) if live_frame(driver) else None
    finally:
        driver.switch_to.default_content()


def teff_input(driver):
    """The Teff slider, inside the live component (the driver is left inside its iframe)."""
    from selenium.webdriver.common.by import By

    live_frame(driver)
    return driver.find_element(By.CSS_SELECTOR, 'input[type="range"][aria-label^="Teff"]')


def slider_series(driver, moves: int) -> dict:
    from selenium.webdriver.common.keys import Keys

    in_frame(driver, "window.__t0 = null; if (!window.__keydownProbe) { window.__keydownProbe = true;"
                     "document.addEventListener('keydown', () => { window.__t0 = performance.now(); }, true); }")
    # The iframe's clock starts later than the page's, which records the websocket traffic.
    offset = in_frame(driver, "return performance.timeOrigin;") - driver.execute_script("return performance.timeOrigin;")
    state = in_frame(driver, SPECTRUM_STATE)
    direction = Keys.ARROW_LEFT if state["values"]["teff"] > 4800 else Keys.ARROW_RIGHT
    steps = []
    for move in range(moves + 2):  # the first two warm up (first figure of a zoom, caches)
        current = in_frame(driver, SPECTRUM_STATE)["values"]["teff"]
        in_frame(driver, "window.__t0 = null;")
        teff_input(driver).send_keys(direction)  # leaves the driver in the iframe
        result = driver.execute_async_script(WAIT_FOR_REDRAW, current)
        if result is None:
            raise RuntimeError(f"no redraw after move {move}")
        settled = driver.execute_async_script(WAIT_FOR_SETTLE, result["teff"], result["t0"])
        driver.switch_to.default_content()
        time.sleep(0.3)  # let trailing messages arrive before reading the traffic
        step = {"ms": result["t1"] - result["t0"]}
        if settled:
            step["settled_ms"] = settled["t1"] - result["t0"]
            step.update(traffic(driver, result["t0"] + offset, settled["t1"] + offset))
        if move >= 2:
            steps.append(step)
        time.sleep(0.2)
    state = in_frame(driver, SPECTRUM_STATE)
    decode_times = in_frame(driver, "return window.__astrocoreDecodeMs || [];")  # live.js keeps the last ones
    settled_times = [s["settled_ms"] for s in steps if "settled_ms" in s]
    return {**summary(steps), "median_settled_ms": round(statistics.median(settled_times), 1) if settled_times else None,
            "browser_decode_ms": round(statistics.median(decode_times), 2) if decode_times else None,
            "points_drawn": state["points"], "traces": state["traces"],
            "xrange": state["range"]}


def spectra_model(home: Path) -> tuple[Path, bool, str]:
    """The runs folder for the Spectra page, whether the app installs the shipped model, a description."""
    shipped = [p.name for p in SHIPPED.glob("*") if (p / "run.json").exists()] if SHIPPED.is_dir() else []
    runs = home / "spectra-runs"
    if shipped:
        return runs, True, f"shipped: {', '.join(shipped)}"
    if not finished(runs):
        run_cli(["train", "disentangle", "--data", "apogee", "--n-stars", "3", "--epochs", "2", "--out", str(runs),
                 "--run-id", "default-apogee-mdat"], home)
    return runs, False, "small APOGEE-like model trained here (3 chemistries, 2 epochs; nothing shipped yet)"


def measure_spectra(home: Path, moves: int) -> dict:
    runs, shipped, description = spectra_model(home)
    with streamlit_server(home, runs, shipped) as url, chromium() as driver:
        started = time.time()
        driver.get(url + "/spectra")
        ready = wait(lambda: in_frame(driver, SPECTRUM_STATE), 300)
        if not ready:
            raise RuntimeError(f"the Generate view did not appear: {body(driver)[-800:]}")
        first_view = time.time() - started
        if not wait(lambda: in_frame(driver, "return window.__astrocoreDecoderReady === true;"), 60):
            raise RuntimeError("the decoder did not load into the browser")
        time.sleep(2.0)
        default_zoom = in_frame(driver, SPECTRUM_STATE)["range"]
        log(f"spectra: Generate view after {first_view:.1f} s; {moves} moves at the default zoom")
        zoomed = slider_series(driver, moves)
        log(f"spectra: default zoom median {zoomed['median_ms']} ms; now Full range")
        choose_zoom(driver, "Full range")
        wait(lambda: (in_frame(driver, SPECTRUM_STATE) or {}).get("range") != default_zoom, 30)
        time.sleep(1.5)
        full = slider_series(driver, moves)
        log(f"spectra: full range median {full['median_ms']} ms")
    return {"model": description, "first_view_s": round(first_view, 1), "default_zoom": zoomed, "full_range": full,
            "profile": profile_spectra(runs if not shipped else None)}


def profile_spectra(runs: Path | None) -> dict:
    """Server-side pieces of one slider move, in-process: decode, true spectrum, figure, JSON."""
    import numpy as np
    import plotly.io as pio

    from astrocore.app import common as app_common
    from astrocore.app import plots
    from astrocore.app import spectra as app_spectra

    if runs is None:
        runs = Path(tempfile.mkdtemp())
        app_common.install_shipped_runs(runs)
    record = app_common.choose_default_run(app_common.finished_runs(runs))
    run = app_common.load_run(record.path)
    dataset = app_common.dataset_from_json(app_common.source_to_json(record.data))
    renderer = app_common.renderer_from_json(app_common.source_to_json(record.data))
    star = 0
    own = app_spectra.star_conditionals(run, dataset.labels, star)
    base = app_spectra.encode_star(run, dataset, star)
    timings = {"decode_ms": [], "true_spectrum_ms": [], "figure_ms": [], "to_json_ms": []}
    sizes = {}
    for zoom_name, xrange in (("default zoom", plots.zoom_presets(run.wavelength)[plots.default_zoom(run.wavelength)]),
                              ("full range", None)):
        for i in range(12):
            values = {**own, "teff": own["teff"] + 10 * (i + 1)}
            t = time.perf_counter()
            view = app_spectra.star_view(run, dataset, star, values, base_latent=base)
            timings["decode_ms"].append(1e3 * (time.perf_counter() - t))
            t = time.perf_counter()
            truth = app_spectra.true_spectrum(renderer, dataset.labels, star, values) if renderer else None
            timings["true_spectrum_ms"].append(1e3 * (time.perf_counter() - t))
            t = time.perf_counter()
            figure = plots.spectrum_figure(run.wavelength, {"Original": view.original, "Reconstruction": view.reconstruction,
                                                            "Generated": view.generated, "True": truth},
                                           {"Gen. − true": view.generated - truth} if truth is not None else {},
                                           xrange=xrange, meta={"values": values})
            timings["figure_ms"].append(1e3 * (time.perf_counter() - t))
            t = time.perf_counter()
            text = pio.to_json(figure, validate=False)
            timings["to_json_ms"].append(1e3 * (time.perf_counter() - t))
        sizes[zoom_name] = {"json_bytes": len(text), "points": int(sum(len(tr.x) for tr in figure.data))}
    return {**{k: round(float(np.median(v)), 2) for k, v in timings.items()}, "figure_sizes": sizes,
            "pixels": int(len(run.wavelength))}


# ---------------------------------------------------------------------------- 2. Explorer
def explore_run(home: Path, n_chemistries: int) -> Path:
    runs = home / "explore-runs"
    if not finished(runs):
        run_cli(["train", "disentangle", "--data", "apogee", "--n-stars", str(n_chemistries), "--epochs", "1",
                 "--out", str(runs), "--run-id", f"explore-{n_chemistries * 210}"], home)
    return runs


def lasso(driver, box: dict, fraction: float, shift: float = 0.0) -> None:
    """Press, draw a closed polygon around the plot centre, release (real pointer events)."""
    from selenium.webdriver.common.action_chains import ActionChains

    cx, cy = box["left"] + box["width"] * (0.5 + shift), box["top"] + box["height"] / 2
    dx, dy = box["width"] * fraction, box["height"] * fraction
    corners = [(-dx, -dy), (dx, -dy), (dx, dy), (-dx, dy), (-dx, -dy + 4)]
    actions = ActionChains(driver, duration=20)
    page = driver.find_element("tag name", "body")
    origin = page.rect
    to = lambda x, y: (int(x - origin["x"] - origin["width"] / 2), int(y - origin["y"] - origin["height"] / 2))  # noqa: E731
    actions.move_to_element_with_offset(page, *to(cx - dx, cy - dy)).click_and_hold()
    for (ax, ay), (bx, by) in zip(corners[:-1], corners[1:]):
        for step in range(1, 7):
            t = step / 6
            actions.move_to_element_with_offset(page, *to(cx + ax + (bx - ax) * t, cy + ay + (by - ay) * t))
    actions.release().perform()


def measure_explorer(home: Path, n_chemistries: int, lassos: int) -> dict:
    runs = explore_run(home, n_chemistries)
    with streamlit_server(home, runs, False) as url, chromium() as driver:
        started = time.time()
        driver.get(url + "/explore")
        box = wait(lambda: driver.execute_script(EXPLORER_CHART), 600)
        if not box:
            raise RuntimeError(f"the explorer chart did not appear: {body(driver)[-1500:]}")
        first_view = time.time() - started
        log(f"explorer: {box['n']:,} objects ({box['shown']:,} drawn, WebGL {box['webgl']}) after {first_view:.1f} s")
        time.sleep(2.0)
        # The mouse is released inside the component's iframe; the time is taken on the page's clock.
        # (The component replays the release for plotly after sending the lasso: only the real one counts.)
        driver.execute_script(FIND_SCATTER + "window.__t0 = null; found.frame.contentWindow.addEventListener('mouseup', "
                              "e => { if (e.isTrusted) { window.__t0 = performance.now(); } }, true);")
        fractions = [0.3, 0.2, 0.35, 0.25, 0.4, 0.15, 0.28, 0.33, 0.22, 0.38, 0.18, 0.3]
        steps, previous, selected = [], None, []
        for i in range(lassos + 1):  # the first lasso warms up (first linked figures)
            box = driver.execute_script("window.scrollTo(0, 0);" + EXPLORER_CHART)
            driver.execute_script("window.__t0 = null;")
            lasso(driver, box, fractions[i % len(fractions)], shift=0.04 * ((i % 3) - 1))
            result = driver.execute_async_script(WAIT_FOR_LINKED, previous)
            if result is None:
                log(f"explorer: lasso {i} gave no new linked view (same selection?)")
                continue
            previous = result["n"]
            time.sleep(0.6)
            step = {"ms": result["t1"] - result["t0"], **traffic(driver, result["t0"], result["t1"])}
            if i:
                steps.append(step)
                selected.append(result["n"])
            time.sleep(0.4)
        log(f"explorer: lasso median {statistics.median(s['ms'] for s in steps):.0f} ms")
    return {"objects": box["n"], "drawn": box["shown"], "webgl": box["webgl"], "first_view_s": round(first_view, 1),
            "selected": selected, **summary(steps),
            "largest_message_after_lasso_bytes": max(s.get("largest_in", 0) for s in steps)}


# ---------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("spectra", "explore"), help="one measurement only")
    parser.add_argument("--moves", type=int, default=20, help="slider steps per zoom (default 20)")
    parser.add_argument("--lassos", type=int, default=9, help="lassos on the explorer (default 9)")
    parser.add_argument("--chemistries", type=int, default=48,
                        help="APOGEE-like chemistries of the explorer run, 210 spectra each (48: 10,080 objects)")
    parser.add_argument("--home", help="working folder (runs, data cache; reused when given), default a temp folder")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "latency.json"))
    args = parser.parse_args(argv)
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        sys.exit("Needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver).")
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="astrocore-latency-"))
    home.mkdir(parents=True, exist_ok=True)
    report = {"command": "python benchmarks/latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
              "python": platform.python_version(), "load_average_1min_before": round(os.getloadavg()[0], 2),
              "budgets": {"slider_to_redraw_median_ms": 150, "lasso_to_linked_view_median_ms": 500}}
    if args.only in (None, "spectra"):
        report["spectra_slider"] = measure_spectra(home, args.moves)
    if args.only in (None, "explore"):
        report["explorer_lasso"] = measure_explorer(home, args.chemistries, args.lassos)
    report["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
