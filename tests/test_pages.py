"""The Streamlit pages under streamlit.testing.v1.AppTest: home (app.py), Spectra and Runs.

The tests share one runs folder and run in file order: the first visit of the Spectra page trains
the tiny default model (a few fingerprints, two epochs: set through ASTROCORE_DEFAULT_* variables),
later tests use it.
"""
import base64
import json
from pathlib import Path

import numpy as np

import pytest
from streamlit.testing.v1 import AppTest

from astrocore import jobs
from astrocore.app import common as app_common
from astrocore.app import live_decoder
from astrocore.data.cache import cache_dir
from astrocore.runs import RunRecord, list_runs, runs_dir

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
ASSETS = ROOT / "assets"
TIMEOUT = 180


@pytest.fixture(scope="module")
def app_home(tmp_path_factory):
    return tmp_path_factory.mktemp("apptest")


@pytest.fixture(autouse=True)
def app_env(app_home, monkeypatch):
    """All tests of this module share one runs folder and cache (set after conftest's isolation)."""
    monkeypatch.setenv("ASTROCORE_RUNS", str(app_home / "runs"))
    monkeypatch.setenv("ASTROCORE_CACHE", str(app_home / "cache"))
    monkeypatch.setenv("ASTROCORE_DEFAULT_NSTARS", "3")
    monkeypatch.setenv("ASTROCORE_DEFAULT_EPOCHS", "2")
    monkeypatch.setenv("ASTROCORE_SHIPPED_RUNS", "0")  # these tests cover training the default model on a first visit
    return app_home


def open_page(page: str | None = None, tab: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
    if tab:
        at.session_state["spectra_tab"] = tab
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart_specs(at: AppTest) -> list[dict]:
    """Streamlit's plotly charts, then the figures drawn by live components (the Generate view)."""
    return [json.loads(element.proto.spec) for element in at.get("plotly_chart")] + [
        args["figure"] for args in live_args(at) if "figure" in args]


def live_args(at: AppTest, kind: str | None = None) -> list[dict]:
    """The JSON arguments of the live components (astrocore.app.live) on the page."""
    found = [json.loads(element.proto.json_args) for element in at.get("component_instance")]
    return [args for args in found if kind is None or args.get("kind") == kind]


def move_live_sliders(at: AppTest, **values) -> AppTest:
    """What the Generate view's component reports when its sliders rest at ``values``."""
    args = live_args(at, "generate")[0]
    report = at.session_state["live_generate"] if "live_generate" in at.session_state else None
    seq = (report or {}).get("seq", 0) + 1
    at.session_state["live_generate"] = {"id": "apptest", "seq": seq, "star": args["star"],
                                         "values": {**args["values"], **values}}
    return at.run()


def axis_title(spec: dict) -> str | None:
    return ((spec["layout"].get("xaxis") or {}).get("title") or {}).get("text")


def spectrum_meta(at: AppTest) -> dict:
    metas = [spec["layout"].get("meta") for spec in chart_specs(at)]
    return next(meta for meta in metas if meta and "values" in meta)


def texts(elements) -> str:
    return " ".join(str(element.value) for element in elements)


def default_folder() -> Path:
    return runs_dir() / app_common.default_model_settings()["run_id"]


@pytest.fixture
def default_model():
    """The first-visit default model, trained (by a first page visit) if no earlier test did, so
    each test that needs it also runs alone."""
    if jobs.job_status(default_folder())["state"] != "done":
        AppTest.from_file(APP, default_timeout=TIMEOUT).run().switch_page("pages/spectra.py").run()
        status = jobs.wait(default_folder(), timeout=TIMEOUT)
        assert status["state"] == "done", status
    return default_folder()


# ---------------------------------------------------------------------------- home
def test_home_page_explains_the_tools():
    at = open_page()
    assert at.title[0].value == "astrocore"
    body = texts(at.markdown) + texts(at.subheader)
    assert "Spectra" in body and "Runs" in body and "coming" in body.lower()
    sidebar = texts(at.sidebar.caption)
    assert "Device" in sidebar and ("CPU" in sidebar or "CUDA" in sidebar)
    assert "Runs folder" in sidebar


# ---------------------------------------------------------------------------- spectra
def test_first_visit_trains_the_default_model_in_the_background():
    assert list_runs() == []
    at = open_page("pages/spectra.py")
    assert "Welcome" in texts(at.info)
    status = jobs.job_status(default_folder())
    assert status["state"] in ("starting", "running", "done")
    # The page stays usable meanwhile: the Data tab shows the simulated grid.
    at.session_state["spectra_tab"] = "Data"
    at.run()
    assert not at.exception
    status = jobs.wait(default_folder(), timeout=TIMEOUT)
    assert status["state"] == "done", status
    at = open_page("pages/spectra.py")
    generate = live_args(at, "generate")
    assert len(generate) == 1, "the Generate view is the live component"
    labels = [spec["title"] for spec in generate[0]["specs"]]
    assert "Teff [K]" in labels and "log g [dex]" in labels
    assert at.selectbox(key="model_pick").value == app_common.default_model_settings()["run_id"]


def test_moving_the_teff_slider_redraws_the_spectrum(default_model):
    at = open_page("pages/spectra.py")
    args = live_args(at, "generate")[0]
    before = spectrum_meta(at)
    assert args["values"] == before["values"]
    # What the browser needs to redraw a move by itself: the decoder file, the star's latent, the
    # pixel of every plotted point of the generated trace, the sliders in physical units.
    decoder = cache_dir().glob(f"live/*/{args['decoder_url']}")
    assert next(decoder).read_bytes()[:4] == b"ACD1"
    generated = next(t for t in args["figure"]["data"] if t["name"] == "Generated")
    assert len(args["pixels"]) == len(decoded(generated["y"]))
    assert len(args["latent"]) == json.loads(default_folder().joinpath("run.json").read_text())["config"]["latent_dim"]
    teff = next(spec for spec in args["specs"] if spec["name"] == "teff")
    assert teff["unit"] == "K" and teff["low"] < teff["train_low"] < teff["train_high"] < teff["high"]
    generated_before = decoded(generated["y"])
    # The component reports where its sliders rest: the server draws the true spectrum, captions and
    # downloads there.
    move_live_sliders(at, teff=before["values"]["teff"] + 200)
    assert not at.exception
    after = spectrum_meta(at)
    assert after["values"]["teff"] == pytest.approx(before["values"]["teff"] + 200)
    assert at.session_state["cp_teff"] == pytest.approx(before["values"]["teff"] + 200)  # the grid section's value
    generated_after = decoded(next(t for t in chart_specs(at)[-1]["data"] if t["name"] == "Generated")["y"])
    assert not np.allclose(generated_after, generated_before)
    assert f"Teff {before['values']['teff'] + 200:g}" in texts(at.caption)
    # A report seen once is not applied again (the values stay where the server put them).
    assert live_args(at, "generate")[0]["values"]["teff"] == pytest.approx(before["values"]["teff"] + 200)
    # Beyond the training range: allowed, and flagged on the figure.
    move_live_sliders(at, teff=teff["high"])
    assert "extrapolation" in spectrum_meta_title(at)
    # A report about another star is ignored.
    stale = dict(at.session_state["live_generate"], seq=99, star="another star", values={"teff": 3000.0, "logg": 1.0})
    at.session_state["live_generate"] = stale
    at.run()
    assert live_args(at, "generate")[0]["values"]["teff"] == pytest.approx(teff["high"])
    # Zoom presets and the traces shown.
    at.selectbox(key="zoom").set_value("Full range").run()
    assert not at.exception


def decoded(array) -> np.ndarray:
    """A plotly JSON array (a list, or base64 typed {"dtype", "bdata"}) as numpy."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
    return np.asarray(array, dtype=float)


def test_a_decoder_the_browser_cannot_run_keeps_the_server_sliders(default_model, app_home, monkeypatch):
    def unsupported(model):
        raise live_decoder.UnsupportedDecoder("activation Tanh is not supported in the browser")

    monkeypatch.setattr(live_decoder, "decoder_file", unsupported)
    monkeypatch.setenv("ASTROCORE_CACHE", str(app_home / "cache-no-live"))  # not the decoder file made before
    at = open_page("pages/spectra.py")
    assert not live_args(at, "generate")
    assert "decoded on the server: activation Tanh" in texts(at.caption)
    before = spectrum_meta(at)
    slider = at.slider(key="cp_teff")
    slider.set_value(slider.value + 200).run()
    assert not at.exception
    assert spectrum_meta(at)["values"]["teff"] == pytest.approx(before["values"]["teff"] + 200)
    slider.set_value(slider.max).run()
    assert "Extrapolation" in texts(at.warning)


def test_latent_editor_and_star_picker(default_model):
    at = open_page("pages/spectra.py")
    at.toggle(key="edit_latent").set_value(True).run()
    latent = [slider for slider in at.slider if slider.key and slider.key.startswith("z_")]
    assert len(latent) >= 2
    latent[0].set_value(latent[0].max).run()
    assert not at.exception
    assert "edited latent" in spectrum_meta_title(at)
    picker = at.selectbox(key="star_pick")
    other = [option for option in picker.options if option != picker.value][0]
    picker.select(other).run()
    assert not at.exception


def spectrum_meta_title(at: AppTest) -> str:
    for spec in chart_specs(at):
        if (spec["layout"].get("meta") or {}).get("values"):
            return spec["layout"]["title"]["text"]
    return ""


def test_data_tab_shows_simulated_data(default_model):
    at = open_page("pages/spectra.py", tab="Data")
    at.radio(key="data_kind").set_value("APOGEE-like simulator").run()
    at.number_input(key="n_apogee").set_value(3).run()  # the default model's grid: cached on disk
    assert not at.exception
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Spectra"] == "630" and metrics["Pixels"] == "7,214"
    assert metrics["Chemical fingerprints"] == "3"
    assert "15" in metrics["Wavelength [Å]"]
    labels = at.dataframe[0].value
    assert "Teff [K]" in set(labels["label"])
    assert any((axis_title(spec) or "").startswith("Wavelength in ") for spec in chart_specs(at))


def test_bad_uploads_give_readable_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROCORE_DATA_ROOT", str(tmp_path))  # the local-path box reads only the data root
    at = open_page("pages/spectra.py", tab="Data")
    at.radio(key="data_kind").set_value("Your spectra (FITS, CSV, zipped GANDALF folder)").run()
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"this is not FITS" * 50)
    at.text_input(key="spectra_path").input(str(broken)).run()
    assert not at.exception
    assert "FITS" in texts(at.error)
    at.text_input(key="spectra_path").input(str(tmp_path / "missing.csv")).run()
    assert "no such file" in texts(at.error)
    at.text_input(key="spectra_path").input(str(tmp_path / "notes.pdf")).run()
    assert not at.exception
    at.radio(key="data_kind").set_value("Payne emulator (.npz)").run()
    fake = tmp_path / "weights.npz"
    fake.write_bytes(b"not a zip")
    at.text_input(key="payne_path").input(str(fake)).run()
    assert not at.exception and "weights.npz" in texts(at.error)


def test_wavelength_mismatch_is_reported_on_the_page(default_model):
    example = ASSETS / "example_rvs_spectra.csv"
    if not example.exists():
        pytest.skip("assets/example_rvs_spectra.csv is missing")
    at = open_page("pages/spectra.py", tab="Data")
    at.radio(key="data_kind").set_value("Your spectra (FITS, CSV, zipped GANDALF folder)").run()
    at.text_input(key="spectra_path").input(str(example)).run()
    assert not at.exception
    assert "cannot encode these spectra" in texts(at.warning)
    at.session_state["spectra_tab"] = "Generate"
    at.run()
    at.radio(key="star_source").set_value("the data loaded in the Data tab").run()
    assert not at.exception
    assert "cannot go through this model" in texts(at.error)


def test_train_tab_starts_a_background_run(default_model):
    at = open_page("pages/spectra.py", tab="Train")
    at.radio(key="train_mode").set_value("at")
    at.number_input(key="train_epochs").set_value(1)
    at.text_input(key="train_lambdas").input("0.05")
    at.selectbox(key="train_schedule").set_value("cosine")
    at.number_input(key="train_refit").set_value(1)
    at.selectbox(key="train_cp_features").set_value("fourier")
    at.selectbox(key="train_conditioning").set_value("film")
    at.selectbox(key="train_encoder").set_value("mlp")
    at.number_input(key="train_noise_snr").set_value(200.0)
    at.number_input(key="train_twin_codes").set_value(7)
    submit = [b for b in at.button if "Start training" in str(b.label)][0]
    submit.click().run()
    assert not at.exception
    assert "Started" in texts(at.success)
    run_id = at.session_state["watched_jobs"][-1]
    status = jobs.wait(runs_dir() / run_id, timeout=TIMEOUT)
    assert status["state"] == "done", status
    record = RunRecord.read(runs_dir() / run_id)
    assert record.config["mode"] == "at" and record.config["epochs"] == 1
    assert record.config["lambdas"] == [0.05] and record.config["lr_schedule"] == "cosine"
    assert record.config["decoder_refit_epochs"] == 1 and record.config["cp_features"] == "fourier"
    assert record.config["conditioning"] == "film" and record.config["encoder"] == "mlp"
    assert record.config["input_noise"] == pytest.approx(0.005) and record.config["twin_code_steps"] == 7
    at.run()
    assert any(option.startswith(run_id) for option in at.selectbox(key="model_pick").options)
    # A bad lambda is a message, not a traceback.
    at.text_input(key="train_lambdas").input("0.1, 0.2, 0.3")
    [b for b in at.button if "Start training" in str(b.label)][0].click().run()
    assert "one per conditional parameter" in texts(at.error)
    # FiLM modulates an MLP encoder; with the polynomial reader it is refused before starting.
    at.text_input(key="train_lambdas").input("")
    at.selectbox(key="train_encoder").set_value("cp-polynomial")
    [b for b in at.button if "Start training" in str(b.label)][0].click().run()
    assert "conditioning='concat'" in texts(at.error)


def test_evaluate_tab_table_and_colouring(default_model):
    folder = default_folder()
    fake = {"run": folder.name, "mode": "mdat", "conditional": ["teff", "logg"],
            "r2": {"teff": 0.2, "logg": 0.1, "feh": 0.8, "afe": None}, "r2_knn": {"teff": 0.3, "logg": 0.2},
            "twins_top10": 0.4, "recon_rms": 0.01,
            "recon_mse_by_cp": {"parameter": "teff", "low": [4000.0, 5000.0], "high": [4500.0, 5500.0],
                                "mean": [3e-5, 1e-5], "count": [20, 20]},
            "X": {"r2": {"teff": 0.99, "logg": 0.97, "feh": 0.9, "afe": 0.6}, "twins_top10": 0.05}}
    jobs.evaluation_path(folder).write_text(json.dumps(fake))
    at = open_page("pages/spectra.py", tab="Evaluate")
    r2_table = next(frame.value for frame in at.dataframe
                    if hasattr(frame.value, "columns") and "paper mdAT" in frame.value.columns)
    assert r2_table.loc["[α/Fe] [dex]", "mdAT"] == "–"  # no R² for a label that does not vary
    assert any(spec["layout"]["yaxis"].get("type") == "log" and "Teff" in json.dumps(spec["layout"]["xaxis"])
               for spec in chart_specs(at))  # the reconstruction error across Teff
    at.selectbox(key="emb_colour").set_value("logg").run()
    assert not at.exception
    colourbar = [spec for spec in chart_specs(at) if spec["data"] and spec["data"][0].get("mode") == "markers"]
    assert colourbar and "log g" in json.dumps(colourbar[-1]["data"][0]["marker"]["colorbar"])
    at.selectbox(key="emb_colour").set_value("split").run()
    at.toggle(key="eval_knn").set_value(True).run()
    assert not at.exception


# ---------------------------------------------------------------------------- runs
def test_runs_page_lists_compares_and_deletes(default_model, toy_dataset):
    if len(list_runs()) < 2:  # run alone: a second run to compare and delete
        from astrocore.methods.disentangle import DisentanglerConfig, fit
        fit(toy_dataset, DisentanglerConfig.preset("fast", epochs=1, latent_dim=2), runs_root=runs_dir())
    at = open_page("pages/runs.py")
    table = at.dataframe[0].value
    ids = set(table["id"])
    assert app_common.default_model_settings()["run_id"] in ids and len(ids) >= 2
    assert "default-" in texts(at.code)  # the `astrocore runs list` listing
    at.multiselect(key="compare_runs").set_value(sorted(ids)[:2]).run()
    assert not at.exception
    victim = next(i for i in ids if not i.startswith("default-"))
    at.selectbox(key="manage_run").set_value(victim).run()
    at.button(key="delete").click().run()
    assert "cannot be undone" in texts(at.error)
    at.button(key="delete_yes").click().run()
    assert not at.exception
    assert victim not in {record.id for record in list_runs()}


@pytest.mark.slow
def test_umap_embedding_is_computed_in_the_background(default_model):
    folder = default_folder()
    at = open_page("pages/spectra.py", tab="Evaluate")
    at.radio(key="emb_method").set_value("umap").run()
    [b for b in at.button if "Compute UMAP" in str(b.label)][0].click().run()
    assert not at.exception
    status = jobs.wait(folder, "embed-z-umap", timeout=600)
    assert status["state"] == "done", status
    at.run()
    assert any(axis_title(spec) == "UMAP 1" for spec in chart_specs(at))
