"""The Self-supervised images page under streamlit.testing.v1.AppTest, with tiny runs trained here."""
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from astrocore.app import images as logic
from astrocore.data.simulators.cutouts import label_set, simulate_cutouts
from astrocore.methods.ssl.config import SSLConfig
from astrocore.methods.ssl.fit import fit

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TINY = dict(epochs=1, head_epochs=1, min_steps=2, batch_size=32, width=4, head_hidden=8, val_objects=10)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A runs folder with a pretext run and a downstream run (simulated data from a shared cache)."""
    root = tmp_path_factory.mktemp("ssl-page")
    mp = pytest.MonkeyPatch()
    mp.setenv("ASTROCORE_CACHE", str(root / "cache"))
    unlabelled = simulate_cutouts(70, seed=21, r_range=(13.0, 15.5), n_workers=1)
    pretext = fit(unlabelled, SSLConfig.preset("fast", **TINY), runs_root=root / "runs")
    labelled = label_set("star_galaxy_quasar", 60, seed=22, n_workers=1)
    fit(labelled, SSLConfig.preset("fast", stage="downstream", scheme="frozen_pretext", **TINY),
        runs_root=root / "runs", pretext_run=pretext)
    mp.undo()
    return root


@pytest.fixture(autouse=True)
def env(home, monkeypatch):
    monkeypatch.setenv("ASTROCORE_RUNS", str(home / "runs"))
    monkeypatch.setenv("ASTROCORE_CACHE", str(home / "cache"))
    monkeypatch.setenv("ASTROCORE_SHIPPED_RUNS", "0")


def open_images(tab: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("pages/images.py")
    if tab:
        at.session_state["images_tab"] = tab
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart_specs(at):
    return [json.loads(element.proto.spec) for element in at.get("plotly_chart")]


def test_upload_tab_classifies_the_example_cutout():
    at = open_images()
    at.button(key="images_example").click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert list(table["name"]) == ["example_cutout.fits"]  # the PNG has 3 bands: refused with a message
    assert table["predicted_class"][0] in ("star", "galaxy", "quasar")
    assert any("expects 12 bands" in e.value for e in at.error)
    titles = [(spec["layout"].get("xaxis") or {}).get("title", {}).get("text") for spec in chart_specs(at)]
    assert "band centre wavelength [Å]" in titles and "class" in titles
    at.toggle(key="images_show_neighbours").set_value(True).run()
    assert not at.exception and len(at.get("plotly_chart")) == 3


def test_browse_and_results_tabs():
    at = open_images("Browse")
    assert at.selectbox(key="browse_kind").value == "unlabelled"
    assert len(at.get("plotly_chart")) == 2
    at = open_images("Results")
    titles = [(spec["layout"].get("yaxis") or {}).get("title", {}).get("text") for spec in chart_specs(at)]
    assert "predicted - measured magnitude [mag]" in titles
    assert len(at.dataframe) >= 2


def test_training_arguments_and_tables(home):
    arguments = logic.pretext_arguments(500, "both", 3)
    assert arguments[:4] == ["--stage", "pretext", "--pretext", "both"]
    with pytest.raises(ValueError, match="starts from a pretext run"):
        logic.downstream_arguments("merger", "frozen_pretext", 100, None)
    assert logic.pretext_targets_text((0.8, 2.0)) == "Kron magnitudes and 0.8″, 2″ aperture magnitudes"
    assert logic.pretext_targets_text(()) == "Kron magnitudes"  # the paper's targets
    assert logic.pretext_targets_text() == "Kron magnitudes and 0.8″, 2″ aperture magnitudes"  # the fast preset
    runs = logic.ssl_runs(home / "runs")
    table = logic.accuracy_table(runs["downstream"])
    assert len(table) == 1 and 0 <= table["accuracy"][0] <= 1
    bench = {"star_galaxy": {"100": {"scratch": {"accuracy": {"mean": 0.8, "std": 0.01},
                                                 "macro_f1": {"mean": 0.7, "std": 0.02}}, "best": "scratch"}}}
    curves = logic.bench_curves(bench)
    assert curves["accuracy"].tolist() == [0.8]
    figure = logic.low_data_figure(curves, "star_galaxy")
    assert figure.layout.xaxis.title.text == "labelled training cutouts"
    assert np.isclose(figure.data[0].y[0], 0.8)
    # "all" is drawn at the set's training pool when the record has it, else at the set's size
    bench["star_galaxy"]["all"] = {"scratch": {"accuracy": {"mean": 0.9, "std": 0.0}, "macro_f1": {"mean": 0.9, "std": 0}}}
    assert logic.all_label_count({**bench, "n_labelled_per_set": 4000}, "star_galaxy") == 4000
    bench.update(n_labelled_per_set=4000, all_labels={"star_galaxy": 2700})
    assert logic.all_label_count(bench, "star_galaxy") == 2700
    figure = logic.low_data_figure(logic.bench_curves(bench), "star_galaxy", logic.all_label_count(bench, "star_galaxy"))
    assert sorted(figure.data[0].x) == [100, 2700]
    bench["merger"] = {"100": bench["star_galaxy"]["100"]}
    assert logic.curve_sets(logic.bench_curves(bench)) == ["star_galaxy", "merger"]  # the curve first
