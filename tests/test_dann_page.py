"""The Nebulae page under AppTest (gap knobs and BPT diagrams, the comparison of trained runs) and
its logic (classification of an uploaded catalogue, figures)."""
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from astrocore.app import nebulae as logic
from astrocore.data.dataset import DataError
from astrocore.methods.dann.config import DannConfig
from astrocore.methods.dann.fit import fit
from astrocore.methods.dann.run import DannRun

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("nebulae-app")


@pytest.fixture(autouse=True)
def env(home, monkeypatch):
    monkeypatch.setenv("ASTROCORE_RUNS", str(home / "runs"))
    monkeypatch.setenv("ASTROCORE_CACHE", str(home / "cache"))
    return home


@pytest.fixture(scope="module")
def tiny_run(home):
    source = logic.nebula_source(n=400, seed=0)
    dataset = logic.simulate(source)
    return fit(dataset, DannConfig.preset("fast", epochs=2, validator_objects=60), runs_root=home / "runs",
               run_id="dann-tiny", data_source=source)


def open_page(tab=None, **state):
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("pages/nebulae.py")
    for key, value in state.items():
        at.session_state[key] = value
    if tab:
        at.session_state["nebulae_tab"] = tab
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_gap_tab_draws_bpt_diagrams_with_units():
    at = open_page(neb_n=1000)
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert len(specs) == 6
    titles = [spec["layout"]["xaxis"]["title"]["text"] for spec in specs]
    assert any("[NII]" in t for t in titles) and all("[dex]" in t for t in titles)
    names = {trace.get("name") for spec in specs for trace in spec["data"]}
    assert {"Kewley 2001", "Kauffmann 2003", "HII"} <= names
    assert len(at.dataframe) == 1


def test_compare_tab_lists_runs(tiny_run):
    at = open_page(tab="Train & compare", neb_n=1000)
    assert any("dann-tiny" in str(frame.value["run"].tolist()) for frame in at.dataframe)
    assert at.get("plotly_chart")  # confusion matrices and the noise sweep


def test_classify_upload_logic(tiny_run):
    run = DannRun.load(tiny_run.path)
    example = (ROOT / "assets" / "example_nebulae_catalogue.csv").read_bytes()
    table = logic.classify_upload(run, example, "example.csv")
    summary = logic.upload_summary(table)
    assert summary["classified"] > 0 and summary["with a reason"] > 0
    assert set(np.asarray(table["predicted_class"])[np.asarray(table["usable"])]) <= {"HII", "PN", "SNR"}
    assert b"predicted_class" in logic.table_csv(table)
    assert len(logic.reasons_table(table)) == summary["with a reason"]
    with pytest.raises(DataError):
        logic.classify_upload(run, b"not,a\ncatalogue,1\n", "bad.csv")


def test_confusion_and_embedding_figures(tiny_run):
    run = DannRun.load(tiny_run.path)
    figure = logic.confusion_figure(run.record.metrics["target"]["confusion"], "t")
    assert figure.layout.xaxis.title.text == "predicted class"
    embedding = logic.embedding_figure(run, run.dataset(), "features", method="pca", max_points=300)
    assert {trace.name for trace in embedding.data} == {"source", "target"}
