"""The app's non-UI logic (astrocore.app_logic) and figure builders (astrocore.plots)."""
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import toy_spectra

from astrocore.app import common as app_common
from astrocore.app import plots
from astrocore.app import runs as app_runs
from astrocore.app import spectra as app_spectra
from astrocore.app import uploads
from astrocore.data.dataset import Dataset
from astrocore.data.readers import read_spectra
from astrocore.methods import registry, shipping
from astrocore.methods.disentangle import DisentanglerConfig, fit
from astrocore.runs import RunRecord

ROOT = Path(__file__).resolve().parents[1]

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A tiny mdAT model on the toy grid (a few seconds on a CPU)."""
    root = tmp_path_factory.mktemp("logic-runs")
    dataset = toy_spectra(n_fingerprints=10)
    config = DisentanglerConfig.preset("fast", mode="mdat", epochs=2, batch_size=64, latent_dim=4)
    run = fit(dataset, config, runs_root=root, run_id="toy-mdat", data_source={"kind": "dataset"})
    return run, dataset


# ---------------------------------------------------------------------------- defaults and runs
def test_default_model_settings_follow_environment(monkeypatch):
    monkeypatch.setenv("ASTROCORE_DEFAULT_EPOCHS", "3")
    monkeypatch.setenv("ASTROCORE_DEFAULT_NSTARS", "5")
    settings = app_common.default_model_settings()
    assert settings["epochs"] == 3 and settings["n_stars"] == 5
    assert settings["run_id"].startswith(app_common.DEFAULT_RUN_PREFIX)
    assert settings["mode"] == "mdat" and settings["conditional"] == ("teff", "logg")


def _record(tmp_path, run_id, status="done", created="2025-01-01T00:00:00+00:00", **config):
    return RunRecord(id=run_id, path=tmp_path / run_id, method="disentangle", status=status, created=created,
                     config={"mode": "mdat", "conditional": ["teff", "logg"], **config},
                     data={"kind": "simulator", "generator": "apogee", "params": {"n_fingerprints": 20, "seed": 0}})


def test_choose_default_run_prefers_finished_default_runs(tmp_path):
    records = [
        _record(tmp_path, "disentangle-newer", created="2025-03-01T00:00:00+00:00"),
        _record(tmp_path, "default-apogee-mdat", created="2025-01-01T00:00:00+00:00"),
        _record(tmp_path, "default-failed", status="failed", created="2025-04-01T00:00:00+00:00"),
    ]
    assert app_common.choose_default_run(records).id == "default-apogee-mdat"
    assert app_common.choose_default_run(records[:1]).id == "disentangle-newer"
    assert app_common.choose_default_run(records[2:]) is None
    assert app_common.choose_default_run([]) is None


def test_source_labels_and_cli_arguments():
    apogee = app_common.simulator_source("apogee", 20, 3)
    assert "APOGEE-like, 20 chemistries × 210 Teff, log g, seed 3" == app_common.source_label(apogee)
    assert app_common.cli_data_arguments(apogee) == {"data": "apogee", "n_stars": 20, "data_seed": 3}
    rvs = app_common.simulator_source("rvs", 500)
    assert app_common.cli_data_arguments(rvs)["data"] == "rvs"
    assert app_common.cli_data_arguments(app_common.file_source("/tmp/x.fits"))["data"] == "/tmp/x.fits"
    with pytest.raises(ValueError):
        app_common.simulator_source("hst", 3)


# ---------------------------------------------------------------------------- sliders and generation
def test_slider_specs_extend_training_range_and_snap():
    specs = {s.name: s for s in app_spectra.slider_specs({"teff": (3200.0, 6000.0), "logg": (0.0, 2.6)})}
    teff, logg = specs["teff"], specs["logg"]
    assert teff.low < 3200 and teff.high > 6000 and teff.step == 10
    assert teff.title == "Teff [K]" and logg.title == "log g [dex]"
    assert logg.low >= -1.0
    assert app_spectra.snap(4567.0, teff) == 4570.0
    assert app_spectra.snap(1e6, teff) == teff.high
    assert app_spectra.extrapolation_message({"teff": 4500.0, "logg": 1.0}, {"teff": (3200, 6000), "logg": (0, 2.6)}) == ""
    message = app_spectra.extrapolation_message({"teff": 6500.0, "logg": 1.0}, {"teff": (3200, 6000), "logg": (0, 2.6)})
    assert "Teff" in message and "6500" in message and "3200" in message


def test_star_view_reproduces_reconstruction_at_own_values(toy_run):
    run, dataset = toy_run
    index = 5
    values = app_spectra.star_conditionals(run, dataset.labels, index)
    view = app_spectra.star_view(run, dataset, index, values)
    np.testing.assert_allclose(view.generated, view.reconstruction, atol=1e-5)
    assert not view.extrapolation and view.true is None
    moved = app_spectra.star_view(run, dataset, index, {**values, "teff": 9000.0})
    assert moved.extrapolation
    assert app_spectra.rms(moved.generated, view.generated) > 0


def test_true_spectrum_uses_the_renderer_with_moved_labels(toy_run):
    run, dataset = toy_run
    seen = {}

    def render(table):
        seen["teff"] = float(table["teff"][0])
        return np.ones((1, dataset.n_pixels))

    flux = app_spectra.true_spectrum(render, dataset.labels, 3, {"teff": 4321.0})
    assert seen["teff"] == 4321.0 and flux.shape == (dataset.n_pixels,)
    assert app_spectra.true_spectrum(None, dataset.labels, 3, {"teff": 1.0}) is None

    def broken(table):
        raise ValueError("cannot")

    assert app_spectra.true_spectrum(broken, dataset.labels, 3, {"teff": 4321.0}) is None


def test_star_choices_list_held_out_stars_first(toy_run):
    run, dataset = toy_run
    split = run.arrays()["split"]
    held_out = app_spectra.star_choices(run, dataset)
    assert set(held_out) == set(np.flatnonzero(split == 2))
    everything = app_spectra.star_choices(run, dataset, include_training=True)
    assert len(everything) == len(dataset) and everything[:len(held_out)] == held_out
    assert app_spectra.default_star(held_out, dataset) in held_out


def test_generate_grid_and_exports_round_trip(toy_run, tmp_path):
    run, dataset = toy_run
    specs = {s.name: s for s in app_spectra.slider_specs(run.training_range)}
    axes = {"teff": app_spectra.grid_axis(specs["teff"], 4), "logg": app_spectra.grid_axis(specs["logg"], 3)}
    grid = app_spectra.generate_grid(run, dataset, 7, axes)
    assert grid.spectra.shape == (12, dataset.n_pixels)
    assert set(np.unique(grid.labels["teff"])) == set(axes["teff"])
    assert not np.any(grid.labels["extrapolation"])
    assert grid.provenance["run"] == run.id

    path = tmp_path / "grid.fits"
    path.write_bytes(app_spectra.fits_bytes(grid))
    back = Dataset.load(path)
    np.testing.assert_allclose(back.spectra, grid.spectra)
    np.testing.assert_allclose(back.wavelength, dataset.wavelength)
    with fits.open(path) as hdul:
        assert hdul["WAVELENGTH"].header["BUNIT"] == "Angstrom"

    from astrocore.data.readers import read_spectra

    csv = tmp_path / "grid.csv"
    csv.write_bytes(app_spectra.csv_bytes(grid))
    table = read_spectra(csv)
    np.testing.assert_allclose(table.spectra, grid.spectra, atol=1e-5)
    np.testing.assert_allclose(table.wavelength, dataset.wavelength)

    view = app_spectra.star_view(run, dataset, 7, {"teff": 4400.0, "logg": 2.0})
    single = app_spectra.single_spectrum_dataset(run, view, dataset)
    assert single.spectra.shape == (1, dataset.n_pixels) and single.labels["teff"][0] == 4400.0
    assert app_spectra.export_name("run/1", "star 7", "fits") == "run_1-star_7.fits"


def test_latent_ranges_and_pca(toy_run):
    run, dataset = toy_run
    low, high = app_spectra.latent_ranges(run)
    latent = run.arrays()["latent"]
    assert np.all(low < latent.min(axis=0)) and np.all(high > latent.max(axis=0))
    coordinates = app_spectra.pca_coordinates(run, dataset, "z")
    assert coordinates.shape == (len(dataset), 2)
    assert "split" in app_spectra.colour_options(dataset) and app_spectra.colour_options(dataset)[0] == "teff"
    assert len(app_spectra.hover_texts(dataset)) == len(dataset)


# ---------------------------------------------------------------------------- uploads
def test_validate_upload_reasons():
    with pytest.raises(uploads.UploadError, match="not accepted"):
        uploads.validate_upload("notes.pdf", 10)
    with pytest.raises(uploads.UploadError, match="empty"):
        uploads.validate_upload("spectra.fits", 0)
    with pytest.raises(uploads.UploadError, match="limit is 1 MB"):
        uploads.validate_upload("spectra.fits", 3 * 1024 * 1024, max_mb=1)
    assert uploads.validate_upload("a.fits.gz", 10) == ".fits.gz"
    assert uploads.validate_upload("folder.zip", 10) == ".zip"


def test_unreadable_uploads_give_messages_not_tracebacks():
    with pytest.raises(uploads.UploadError) as error:
        uploads.load_uploaded_spectra("broken.fits", b"this is not a FITS file at all" * 10)
    assert "broken.fits" in str(error.value) and "FITS" in str(error.value)
    with pytest.raises(uploads.UploadError, match="zip"):
        uploads.load_uploaded_spectra("folder.zip", b"PK-not-really-a-zip")
    with pytest.raises(uploads.UploadError, match="GANDALF"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("readme.txt", "nothing here")
        uploads.load_uploaded_spectra("empty.zip", buffer.getvalue())
    with pytest.raises(uploads.UploadError, match="unsafe"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("../evil/X.npy", b"x")
        uploads.load_uploaded_spectra("evil.zip", buffer.getvalue())
    with pytest.raises(uploads.UploadError):
        uploads.load_uploaded_spectra("table.csv", b"a,b\n1,2\n")
    with pytest.raises(uploads.UploadError, match="outside the data folders"):  # local paths: data roots only
        uploads.local_spectra_source("/nonexistent/spectra.fits")
    with pytest.raises(uploads.UploadError, match="Payne"):
        uploads.store_payne_upload("weights.npz", b"not an npz")


@pytest.mark.parametrize("name", ["example_rvs_spectra.csv", "example_gandalf_rvs.zip",
                                  "example_apogee_spectra.fits"])
def test_example_files_load(name):
    path = ASSETS / name
    if not path.exists():
        pytest.skip(f"{path} missing (run python assets/make_assets.py)")
    dataset, source = uploads.load_uploaded_spectra(name, path.read_bytes())
    assert len(dataset) >= 4 and {"teff", "logg"} <= set(dataset.labels.colnames)
    assert source["kind"] == "file"
    summary = app_common.dataset_summary(dataset)
    assert summary["n_objects"] == len(dataset) and not summary["labels"].empty


def test_wavelength_mismatch_is_a_readable_message(toy_run):
    run, dataset = toy_run
    assert uploads.compatibility_error(dataset, run) is None
    other = Dataset(dataset.spectra[:, :100], dataset.wavelength[:100], dataset.labels)
    message = uploads.compatibility_error(other, run)
    assert message and "pixels" in message and "model expects" in message
    no_labels = Dataset(dataset.spectra, dataset.wavelength, dataset.labels["id", "feh"])
    assert "teff" in uploads.compatibility_error(no_labels, run)


# ---------------------------------------------------------------------------- training options
def test_parse_lambdas_and_validation():
    assert app_spectra.parse_lambdas("0.05", ("teff", "logg")) == (0.05,)
    assert app_spectra.parse_lambdas("0.05, 0.02", ("teff", "logg")) == (0.05, 0.02)
    with pytest.raises(ValueError, match="one per conditional"):
        app_spectra.parse_lambdas("1 2 3", ("teff", "logg"))
    with pytest.raises(ValueError, match="numbers"):
        app_spectra.parse_lambdas("big", ("teff",))
    config = app_spectra.validate_training("at", ["teff"], "fast", (0.1,), 3, {"latent_dim": 5})
    assert config.mode == "at" and config.epochs == 3 and config.latent_dim == 5
    with pytest.raises(ValueError):
        app_spectra.validate_training("xyz", ["teff"], "fast", None, None)
    text = app_spectra.cli_command_text(["/usr/bin/python3", "-m", "astrocore", "train", "disentangle", "--set",
                                   "lambdas=[0.1]"])
    assert text.startswith("astrocore train disentangle") and "'lambdas=[0.1]'" in text


def test_loss_curves_from_progress_rows():
    rows = [
        {"step": 10, "total": 40, "metrics": {"epoch": 0, "recon": 0.5, "adv_teff": 0.9, "adv_logg": 0.8}},
        {"step": 20, "total": 40, "metrics": {"epoch": 0, "train_recon": 0.4, "val_recon": 0.45, "val_adv_teff": 0.95}},
        {"step": 30, "total": 40, "metrics": {"epoch": 1, "recon": 0.3, "adv_teff": 0.97, "adv_logg": 0.9}},
        {"step": 40, "total": 40, "metrics": {"epoch": 1, "train_recon": 0.3, "val_recon": 0.35}},
    ]
    curves, chance = app_common.loss_curves(rows, {"mode": "mdat", "conditional": ["teff", "logg"],
                                              "adversary": "regression"})
    np.testing.assert_allclose(curves["train recon"][0], [0.5, 1.5])
    np.testing.assert_allclose(curves["val recon"][1], [0.45, 0.35])
    assert "adversary teff" in curves and "val adversary teff" in curves
    assert chance == {"all": 1.0}
    figure = plots.loss_figure(curves, chance)
    assert figure.layout.xaxis.title.text == "Epoch"



def test_progress_text_names_the_decoder_refit():
    training = {"state": "running", "elapsed": 10.0, "fraction": 0.5, "metrics": {"epoch": 2, "recon": 0.01}}
    assert app_common.progress_text(training, 20).startswith("epoch 3/20 · recon 0.01")
    refit = {**training, "metrics": {"epoch": 21, "recon": 0.005, "phase": "decoder refit"}}
    assert app_common.progress_text(refit, 20).startswith("decoder refit · epoch 22 · recon 0.005")

# ---------------------------------------------------------------------------- evaluation tables
def test_r2_comparison_has_paper_numbers(tmp_path):
    records = [_record(tmp_path, f"run-{mode}", mode=mode) for mode in ("noat", "at", "mdat")]
    evaluation = {"r2": {"teff": 0.2, "logg": 0.1, "feh": 0.9, "afe": 0.7}, "twins_top10": 0.6,
                  "X": {"r2": {"teff": 0.99, "logg": 0.98, "feh": 0.95, "afe": 0.8}, "twins_top10": 0.1}}
    table = app_spectra.r2_comparison([(r, evaluation) for r in records])
    assert list(table.columns[:4]) == ["X", "noAT", "AT", "mdAT"]
    assert "paper mdAT" in table.columns
    assert table.loc["Teff [K] (conditioned)", "paper mdAT"] == pytest.approx(0.224)
    assert table.loc["[Fe/H] [dex]", "mdAT"] == pytest.approx(0.9)
    assert np.isnan(table.loc["[Fe/H] [dex]", "paper mdAT"])  # the paper's APOGEE grid has no [Fe/H] probe
    assert app_spectra.paper_key(records[0]) == ("apogee", ("teff", "logg"))
    twins = app_spectra.twins_table([(r, evaluation) for r in records])
    assert twins.iloc[0]["representation"].startswith("X") and len(twins) == 4
    figure = plots.r2_figure(table)
    assert len(figure.data) >= 4
    # Two runs of the same mode get their ids in the column names.
    duplicate = app_spectra.r2_comparison([(records[2], evaluation), (_record(tmp_path, "again", mode="mdat"), evaluation)])
    assert "mdAT (again)" in duplicate.columns


def test_reconstruction_error_by_parameter_table_and_figure(tmp_path):
    records = [_record(tmp_path, f"run-{mode}", mode=mode) for mode in ("noat", "mdat")]
    breakdown = {"parameter": "teff", "low": [3200.0, 4400.0], "high": [4200.0, 6000.0],
                 "mean": [2e-5, 5e-6], "count": [30, 45]}
    evaluated = [(records[0], {"recon_mse_by_cp": breakdown}), (records[1], {"recon_rms": 0.01})]
    table = app_spectra.recon_by_parameter_table(evaluated)
    assert list(table["bin"]) == ["3200–4200", "4400–6000"] and list(table["count"]) == [30, 45]
    assert table["run"].iloc[0].startswith("noAT")  # the run without the breakdown adds no rows
    figure = plots.recon_by_parameter_figure(table)
    assert len(figure.data) == 1 and list(figure.data[0].x) == [3700.0, 5200.0]
    assert figure.layout.xaxis.title.text == "Teff [K]" and figure.layout.yaxis.type == "log"
    assert app_spectra.recon_by_parameter_table(evaluated[1:]).empty


def test_runs_tables_and_listing(tmp_path, toy_run):
    records = [_record(tmp_path, "a", latent_dim=4), _record(tmp_path, "b", latent_dim=8)]
    diff = app_runs.config_diff(records)
    assert list(diff.index) == ["latent_dim"]
    assert len(app_runs.config_diff(records, only_differences=False)) > 1
    table = app_runs.runs_table(records, {"a": {"r2": {"teff": 0.3}}})
    assert list(table["id"]) == ["a", "b"] and table.loc[0, "R² teff (z)"] == 0.3
    run, _ = toy_run
    text = app_runs.runs_listing_text(run.path.parent)
    assert "toy-mdat" in text
    assert app_runs.zip_bytes(run.record)[:2] == b"PK"
    curves = app_runs.compare_curves([run.record])
    assert run.id in curves


# ---------------------------------------------------------------------------- figures
def test_spectrum_figure_axes_lines_and_residuals():
    wavelength = 8460.0 + 0.1 * np.arange(2400)
    flux = 1 - 0.5 * np.exp(-0.5 * ((wavelength - 8542.1) / 0.8) ** 2)
    figure = plots.spectrum_figure(wavelength, {"Original": flux, "Generated": flux * 0.99, "True spectrum": flux},
                                   {"Generated − true": flux * 0.01}, xrange=(8525.0, 8562.0), title="t",
                                   extrapolation=True, meta={"values": {"teff": 5000}})
    assert figure.layout.xaxis2.title.text == "Wavelength in air [Å]"
    assert figure.layout.yaxis.title.text == "Normalised flux"
    labels = [a.text for a in figure.layout.annotations]
    assert any("Ca II 8542" in text for text in labels) and any("P15" in text for text in labels)
    assert "extrapolation" in figure.layout.title.text
    assert figure.layout.meta["values"]["teff"] == 5000
    assert [trace.name for trace in figure.data] == ["Original", "Generated", "True spectrum", "Generated − true"]
    assert figure.layout.yaxis2.title.text == "Generated − true"
    assert figure.data[0].y.dtype == np.float32


def test_zoom_presets_and_gaps():
    rvs = 8460.0 + 0.1 * np.arange(2400)
    assert "Ca II 8542 + P15" in plots.zoom_presets(rvs) and plots.default_zoom(rvs) == "Full range"
    index = np.concatenate([np.arange(322, 3242), np.arange(3648, 6048), np.arange(6412, 8306)])
    apogee = 10 ** (4.179 + 6e-6 * index)
    presets = plots.zoom_presets(apogee)
    assert "Al I 16724-16768" in presets and plots.default_zoom(apogee) == "Mg I 15744-15770"
    assert all(presets["Full range"][0] <= low < high <= presets["Full range"][1] for low, high in presets.values())
    wl, (flux,) = plots.gapped(apogee, np.ones_like(apogee))
    assert np.isnan(flux).sum() == 2  # the two chip gaps
    mg = [line for line in plots.lines_for(apogee) if line.label.startswith("Mg I 1575")][0]
    assert 15752 < mg.wavelength < 15754  # air 15749.0, drawn at its vacuum wavelength ...
    assert mg.label == f"Mg I {mg.wavelength:.0f}"  # ... and named by it
    assert plots.wavelength_title(apogee) == "Wavelength in vacuum [Å]"
    assert plots.wavelength_title(rvs) == "Wavelength in air [Å]"
    assert plots.lines_for(np.linspace(4000, 5000, 100)) == []


def test_embedding_figure_carries_indices():
    coordinates = np.random.default_rng(0).normal(size=(50, 2))
    figure = plots.embedding_figure(coordinates, np.linspace(3500, 6000, 50), "teff", "umap", selected=3,
                                    hover=[str(i) for i in range(50)])
    assert list(figure.data[0].customdata) == list(range(50))
    assert figure.layout.xaxis.title.text == "UMAP 1"
    categorical = plots.embedding_figure(coordinates, np.array(["train", "held out"] * 25), "split", "pca",
                                         categorical=True)
    assert {trace.name for trace in categorical.data} == {"train", "held out"}


def test_spectrum_figure_crops_zoomed_views():
    index = np.concatenate([np.arange(322, 3242), np.arange(3648, 6048), np.arange(6412, 8306)])
    wavelength = 10 ** (4.179 + 6e-6 * index)
    flux = np.ones_like(wavelength)
    flux[1000] = 0.5  # one deep pixel: the decimated full range must keep it
    full = plots.spectrum_figure(wavelength, {"Generated": flux})
    zoomed = plots.spectrum_figure(wavelength, {"Generated": flux}, xrange=(15736.0, 15780.0))
    # The full range is sent decimated (min / max per display bin), whole, with breaks at the gaps.
    full_x, full_y = np.asarray(full.data[0].x, float), np.asarray(full.data[0].y, float)
    assert len(full_x) < len(wavelength) / 4
    assert np.nanmin(full_x) == pytest.approx(wavelength.min(), abs=0.01)
    assert np.nanmax(full_x) == pytest.approx(wavelength.max(), abs=0.01)
    assert np.nanmin(full_y) == pytest.approx(0.5) and np.isnan(full_y).sum() == 2
    assert 200 < len(zoomed.data[0].x) < 1000
    assert np.nanmin(zoomed.data[0].x) < 15736.0 - 20 and np.nanmax(zoomed.data[0].x) > 15790.0  # blue chip ends at 15793


def test_formatted_tables_show_a_dash_for_missing_values():
    import pandas as pd

    table = pd.DataFrame({"a": [0.12345, np.nan], "b": [None, 2.0]}, index=["x", "y"])
    shown = app_spectra.formatted(table)
    assert shown.loc["x", "a"] == "0.123" and shown.loc["y", "a"] == "–" and shown.loc["x", "b"] == "–"


def test_input_noise_for_snr():
    assert app_spectra.input_noise_for_snr(100) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="S/N"):
        app_spectra.input_noise_for_snr(0)


def test_spectra_unlike_the_training_data_get_a_warning_with_numbers(tmp_path):
    shipped = ROOT / "astrocore" / "shipped" / "default-disentangle-apogee"
    run = registry.load_run(shipping.materialise(shipped, tmp_path))
    assert app_spectra.upload_novelty(run, Dataset.load(shipped / "sample.fits")) is None  # its own held-out stars
    warning = app_spectra.upload_novelty(run, read_spectra(ROOT / "assets" / "example_apogee_spectra.fits"))
    assert warning and "median RMS of 0.0" in warning and "95 % of its held-out spectra" in warning


def test_the_example_spectra_are_offered_and_read():
    from astrocore.app import uploads

    examples = uploads.example_files()
    assert {path.name for path in examples} == set(uploads.SPECTRA_EXAMPLES)
    for path in examples:  # each is a file the Spectra page's path box accepts
        assert uploads.local_spectra_source(str(path))


def test_run_labels_fit_a_select_box():
    from astrocore.methods import shipping
    from astrocore.runs import RunRecord

    record = RunRecord.read(shipping.SHIPPED_DIR / "default-disentangle-apogee")
    label = app_common.run_label(record)
    assert label == "default-disentangle-apogee · mdAT · APOGEE-like, 120 chemistries"
    assert len(label) <= 80  # the Spectra page's box shows about 100 characters at 1500 px
