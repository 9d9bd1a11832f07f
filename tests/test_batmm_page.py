"""The Multimodal BHB page (AppTest) and its Streamlit-free logic (astrocore.app.multimodal)."""
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from astrocore.app import multimodal as logic
from astrocore.data.dataset import DataError
from astrocore.data.simulators.bhb import simulate_bhb
from astrocore.methods.batmm import BatmmConfig, fit

from test_pages import APP, TIMEOUT


@pytest.fixture(scope="module")
def batmm_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("batmm-page")
    dataset = simulate_bhb(100, seed=9, use_cache=False)
    config = BatmmConfig.preset("fast", encoder_epochs=1, fusion_epochs=1, batch_size=32)
    fit(dataset, config, runs_root=home / "runs", run_id="batmm-tiny",
        data_source={"kind": "simulator", "generator": "bhb", "params": {"n_stars": 100, "seed": 9, "use_cache": False}})
    return home


@pytest.fixture(autouse=True)
def page_env(batmm_home, monkeypatch):
    monkeypatch.setenv("ASTROCORE_RUNS", str(batmm_home / "runs"))
    monkeypatch.setenv("ASTROCORE_CACHE", str(batmm_home / "cache"))
    monkeypatch.setenv("ASTROCORE_SHIPPED_RUNS", "0")


def test_logic_upload_and_errors(batmm_home):
    run = logic.BatmmRun.load(batmm_home / "runs" / "batmm-tiny")
    spectrum, cutouts = logic.example_upload()
    result = logic.classify_upload(run, spectrum, cutouts)
    assert 0 <= result["probability"] <= 1 and result["flux"].shape == (3522,) and result["cutout"].shape[0] == 5
    only_image = logic.classify_upload(run, None, cutouts)
    assert not only_image["spectrum_given"] and "band_weights" in only_image
    with pytest.raises(DataError, match="expected one of"):
        logic.classify_upload(run, ("star.txt", b"abc"), [])
    with pytest.raises(DataError, match="not a readable FITS|COADD"):
        logic.classify_upload(run, ("star.fits", b"SIMPLE  = nonsense"), [])
    with pytest.raises(DataError, match="one multi-band cutout file or 5"):
        logic.classify_upload(run, None, cutouts * 2)
    with pytest.raises(DataError, match="Upload a spectrum"):
        logic.classify_upload(run, None, [])
    with pytest.raises(DataError, match="S/N"):
        logic.training_arguments(1000, 0.0, 0, 0)
    assert logic.training_arguments(500, 20, 1, 2)[:2] == ["--n", "500"]


def test_logic_figures_and_table(batmm_home):
    run = logic.BatmmRun.load(batmm_home / "runs" / "batmm-tiny")
    table = logic.comparison_table({"models": {"batmm": {m: {"mean": 0.9, "std": 0.01} for m in ("f1", "precision", "recall")}}},
                                   run.record)
    assert len(table) == len(logic.MODELS) and abs(table["f1_mean_pct"][0] - 90) < 1e-9
    assert b"paper_f1_pct" in logic.table_csv(table)
    assert logic.roc_pr_figure(run).layout.xaxis.title.text == "false positive rate"
    figure, ece = logic.reliability_figure(run)
    assert 0 <= ece <= 1
    attention = run.attention(run.dataset().spectra[:1], run.dataset().images[:1])
    by_wavelength, by_image = logic.cross_attention_figures(attention["cross_attention"][0], run.segment_edges_aa())
    assert by_wavelength.layout.xaxis.title.text == "wavelength [Angstrom]"
    assert np.asarray(by_image.data[0].z).shape == (4, 4)


def test_page_classifies_the_example_star():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/multimodal.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="batmm_example").click().run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [m.label for m in at.metric]
    assert "P(BHB), calibrated" in labels
    for tab in ("Comparison", "Attention", "Train"):
        at.session_state["batmm_tab"] = tab
        at.run()
        assert not at.exception, (tab, [e.value for e in at.exception])
