"""The Embedding explorer page under AppTest, on a tiny disentangling run (toy grid, one epoch).

A lasso cannot be drawn without a browser (tests/test_browser_explore.py does that); here the
selection is driven through session state (``explore_rows``), which is where the page keeps it.
"""
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import toy_spectra
from streamlit.testing.v1 import AppTest

from astrocore import jobs
from astrocore.app import explore, explore_export
from astrocore.methods.disentangle import DisentanglerConfig, fit

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 120


@pytest.fixture(scope="module")
def app_home(tmp_path_factory):
    return tmp_path_factory.mktemp("explore-app")


@pytest.fixture(autouse=True)
def app_env(app_home, monkeypatch):
    monkeypatch.setenv("ASTROCORE_RUNS", str(app_home / "runs"))
    monkeypatch.setenv("ASTROCORE_CACHE", str(app_home / "cache"))
    return app_home


@pytest.fixture(scope="module")
def tiny_run(app_home):
    dataset = toy_spectra(n_fingerprints=6)
    path = dataset.save(app_home / "toy.fits")
    # The MLP encoder: after one epoch the polynomial one maps several toy stars to nearly one latent,
    # and these tests need an uploaded star's own row to be its nearest neighbour.
    return fit(dataset, DisentanglerConfig.preset("fast", epochs=1, latent_dim=3, encoder="mlp"),
               runs_root=app_home / "runs",
               data_source={"kind": "file", "path": str(path)})


def open_explorer(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/explore.py")
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def specs(at: AppTest) -> list[dict]:
    """Streamlit's plotly charts and the figures of live components (the scatter, astrocore.app.live)."""
    return [json.loads(element.proto.spec) for element in at.get("plotly_chart")] + [
        args["figure"] for args in live_args(at) if "figure" in args]


def live_args(at: AppTest) -> list[dict]:
    return [json.loads(element.proto.json_args) for element in at.get("component_instance")]


def metas(at: AppTest) -> list[dict]:
    return [spec["layout"].get("meta") or {} for spec in specs(at)]


def texts(elements) -> str:
    return " ".join(str(element.value) for element in elements)


def test_without_runs_the_page_explains(app_home):
    at = open_explorer()
    assert "No finished runs" in texts(at.info)


def test_home_links_to_the_explorer():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert "Embedding explorer" in texts(at.subheader)
    assert any("explore" in str(link.proto.page) for link in at.get("page_link"))


def test_pca_of_z_coloured_by_teff(tiny_run):
    at = open_explorer()
    chart = next(spec for spec in specs(at) if (spec["layout"].get("meta") or {}).get("explorer"))
    assert chart["layout"]["xaxis"]["title"]["text"] == "PC 1"
    assert chart["layout"]["dragmode"] == "lasso"
    assert chart["data"][0]["marker"]["colorbar"]["title"]["text"] == "Teff [K]"
    assert "Nothing selected" in texts(at.caption)
    # Categorical colours: one trace per fingerprint.
    at.selectbox(key="explore_colour").set_value("fingerprint").run()
    chart = next(spec for spec in specs(at) if (spec["layout"].get("meta") or {}).get("explorer"))
    assert len(chart["data"]) == 6
    # X instead of z.
    at.radio(key="explore_rep").set_value("X").run()
    assert not at.exception


def test_a_selection_shows_linked_views_tags_and_exports(tiny_run):
    at = open_explorer(explore_rows=list(range(10)))
    linked = {meta.get("linked") for meta in metas(at)}
    assert {"spectra", "histograms"} <= linked
    spectra = next(spec for spec in specs(at) if (spec["layout"].get("meta") or {}).get("linked") == "spectra")
    assert spectra["layout"]["xaxis"]["title"]["text"] .startswith("Wavelength in ")
    assert "10 of 72 objects selected" in texts(at.markdown)
    labels = [button.label for button in at.get("download_button")]
    assert any("CSV" in b for b in labels) and any("FITS" in b for b in labels) and any("VOTable" in b for b in labels)
    at.text_input(key="explore_tag_name").set_value("cool giants").run()
    at.button(key="explore_tag_save").click().run()
    assert not at.exception
    tags = explore_export.load_tags(tiny_run.path)
    assert tags["cool giants"]["rows"] == list(range(10))
    # Clear, then bring the tag back as the selection.
    at.button(key="explore_clear").click().run()
    assert "Nothing selected" in texts(at.caption)
    at.button(key="explore_tag_load").click().run()
    assert "10 of 72 objects selected" in texts(at.markdown)


def test_neighbours_and_decoder_from_a_typed_id(tiny_run):
    data = explore.load_explore_data(tiny_run)
    at = open_explorer()
    at.text_input(key="explore_nn_id").set_value("no such star").run()
    at.button(key="explore_nn_find").click().run()
    assert "No object" in texts(at.error) and not at.exception
    at.text_input(key="explore_nn_id").set_value(str(data.ids[4])).run()
    at.button(key="explore_nn_find").click().run()
    assert not at.exception
    table = at.dataframe[-1].value
    assert len(table) == 5 and list(table.columns[:3]) == ["row", "id", "distance"]
    assert "neighbours" in {meta.get("linked") for meta in metas(at)}
    slider = at.slider(key="explore_cp_teff")
    before = slider.value
    slider.set_value(before + 200).run()
    assert not at.exception
    decoder = next(meta for meta in metas(at) if "values" in meta)
    assert decoder["values"]["teff"] == pytest.approx(before + 200)


def test_tsne_runs_in_the_background_and_bad_parameters_are_errors(tiny_run):
    at = open_explorer(explore_method="tsne", explore_tsne_perplexity=30.0)
    assert "perplexity" in texts(at.error) and not at.exception
    at = open_explorer(explore_method="tsne", explore_tsne_perplexity=5.0)
    assert "not computed yet" in texts(at.info)
    at.button(key="explore_compute").click().run()
    assert not at.exception
    name = "embed-" + explore.projection_name("z", "tsne", {"perplexity": 5.0})
    assert jobs.wait(tiny_run.path, name, timeout=TIMEOUT)["state"] == "done"
    at = open_explorer(explore_method="tsne", explore_tsne_perplexity=5.0)
    chart = next(spec for spec in specs(at) if (spec["layout"].get("meta") or {}).get("explorer"))
    assert chart["layout"]["xaxis"]["title"]["text"] == "t-SNE 1"


def chart_event(box=None, lasso=None, points=None) -> dict:
    return {"selection": {"points": points or [], "point_indices": [], "box": box or [], "lasso": lasso or []}}


def explorer_coordinates(at: AppTest):
    chart = next(spec for spec in specs(at) if (spec["layout"].get("meta") or {}).get("explorer"))
    return chart


def test_plotly_selection_events_union_intersection_and_click(tiny_run):
    data = explore.load_explore_data(tiny_run)
    coordinates = explore.compute_projection(data, "z", "pca")
    x, y = coordinates[:, 0], coordinates[:, 1]
    left = [{"x": [float(x.min()) - 1, float(np.median(x))], "y": [float(y.min()) - 1, float(y.max()) + 1]}]
    low = [{"x": [float(x.min()) - 1, float(x.max()) + 1], "y": [float(y.min()) - 1, float(np.median(y))]}]
    in_left = set(np.flatnonzero(x <= np.median(x)).tolist())
    in_low = set(np.flatnonzero(y <= np.median(y)).tolist())
    at = open_explorer(explore_chart=chart_event(box=left))
    assert f"{len(in_left)} of 72 objects selected" in texts(at.markdown)
    at.session_state["explore_combine"] = "union"
    at.session_state["explore_chart"] = chart_event(box=low)
    at.run()
    assert f"{len(in_left | in_low)} of 72 objects selected" in texts(at.markdown)
    at.session_state["explore_combine"] = "intersection"
    at.session_state["explore_chart"] = chart_event(lasso=[{"x": [b for b in left[0]["x"]] + left[0]["x"][::-1],
                                                            "y": [left[0]["y"][0]] * 2 + [left[0]["y"][1]] * 2}])
    at.run()
    assert f"{len(in_left)} of 72 objects selected" in texts(at.markdown)
    # A click on one point picks it: neighbours and the decoder appear.
    at.session_state["explore_chart"] = chart_event(points=[{"customdata": 7, "x": 0.0, "y": 0.0}])
    at.run()
    assert not at.exception
    assert f"**{data.ids[7]}**" in texts(at.markdown)
    assert at.slider(key="explore_cp_teff").value == pytest.approx(float(data.table["teff"].iloc[7]))


def test_a_lasso_reruns_the_linked_views_without_sending_the_scatter_again(tiny_run):
    data = explore.load_explore_data(tiny_run)
    coordinates = explore.compute_projection(data, "z", "pca")
    at = open_explorer()
    scatter = [args for args in live_args(at) if args["kind"] == "scatter"]
    assert len(scatter) == 1 and scatter[0]["figure"]["layout"]["meta"]["explorer"]
    before = at.get("component_instance")[0].proto.json_args
    x, y = coordinates[:, 0], coordinates[:, 1]
    # What the component sends for a lasso: its shape in data coordinates, no points.
    lasso = {"x": [float(x.min()) - 1, float(np.median(x)), float(np.median(x)), float(x.min()) - 1],
             "y": [float(y.min()) - 1, float(y.min()) - 1, float(y.max()) + 1, float(y.max()) + 1]}
    at.session_state["explore_chart"] = {"id": "apptest", "seq": 1, "selection": {"lasso": [lasso]}}
    at.run()
    assert not at.exception
    inside = int((x <= np.median(x)).sum())
    assert f"{inside} of 72 objects selected" in texts(at.markdown)
    # The component's arguments are byte for byte the same, so Streamlit sends a reference, not the scatter.
    assert at.get("component_instance")[0].proto.json_args == before
    # A union draws the combined selection into the figure: a new figure (another key).
    at.session_state["explore_combine"] = "union"
    at.session_state["explore_chart"] = {"id": "apptest", "seq": 2, "selection": {"box": [
        {"x": [float(np.median(x)), float(x.max()) + 1], "y": [float(y.min()) - 1, float(np.median(y))]}]}}
    at.run()
    after = json.loads(at.get("component_instance")[0].proto.json_args)
    assert after["figure_key"] != json.loads(before)["figure_key"]
    assert after["figure"]["layout"]["meta"]["highlighted"] > inside


def test_large_runs_draw_a_subsample_but_select_on_the_full_set(tiny_run, monkeypatch):
    monkeypatch.setattr(explore, "MAX_DISPLAY", 30)
    at = open_explorer(explore_chart=chart_event(box=[{"x": [-1e6, 1e6], "y": [-1e6, 1e6]}]))
    assert "Drawing 30 of the 72 objects as points (a random sample) over a density image" in texts(at.caption)
    chart = explorer_coordinates(at)
    assert chart["layout"]["meta"]["shown"] == 30 and chart["layout"]["meta"]["density"]
    assert chart["data"][0]["type"] == "heatmap"
    assert "72 of 72 objects selected" in texts(at.markdown)


def test_large_runs_zoom_to_a_selection_and_back(tiny_run, monkeypatch):
    monkeypatch.setattr(explore, "MAX_DISPLAY", 30)
    data = explore.load_explore_data(tiny_run)
    at = open_explorer(explore_rows=list(range(10)))
    assert at.button(key="explore_unzoom").disabled and not at.button(key="explore_zoom").disabled
    at.button(key="explore_zoom").click().run()
    assert not at.exception
    chart = explorer_coordinates(at)
    window = at.session_state["explore_window"]["window"]
    assert chart["layout"]["xaxis"]["range"] == [window[0], window[1]]
    assert "Zoomed: all" in texts(at.caption) or "in this window" in texts(at.caption)
    at.button(key="explore_unzoom").click().run()
    assert at.session_state["explore_window"] is None
    assert explorer_coordinates(at)["layout"]["xaxis"].get("range") is None
    assert len(data) == 72


def test_encoder_features_h_on_the_page(tiny_run):
    data = explore.load_explore_data(tiny_run)
    at = open_explorer(explore_rep="h")
    chart = explorer_coordinates(at)
    assert "encoder features h" in chart["layout"]["title"]["text"]
    at.text_input(key="explore_nn_id").set_value(str(data.ids[4])).run()
    at.button(key="explore_nn_find").click().run()
    assert not at.exception
    assert "nearest neighbours in encoder features h" in texts(at.markdown)
    assert len(at.dataframe[-1].value) == 5


def test_neighbours_of_an_uploaded_spectrum(tiny_run, tmp_path):
    from astrocore.data.dataset import Dataset
    from astrocore.data.readers import write_table

    at = open_explorer()
    at.segmented_control(key="explore_nn_source").set_value("upload").run()
    assert "Upload a spectrum" in texts(at.caption)
    one = write_table(toy_spectra(n_fingerprints=6).subset([5]), tmp_path / "one.csv").read_bytes()
    at.file_uploader(key="explore_upload").set_value(("one.csv", one, "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[-1].value
    assert table["row"].iloc[0] == 5 and table["distance"].iloc[0] < 1e-3 and len(table) == 5
    assert "neighbours" in {meta.get("linked") for meta in metas(at)}
    assert "nearest to **one.csv**" in texts(at.markdown)
    # A file with several spectra: choose which one.
    two = write_table(toy_spectra(n_fingerprints=6).subset([5, 9]), tmp_path / "two.csv").read_bytes()
    at.file_uploader(key="explore_upload").set_value(("two.csv", two, "text/csv")).run()
    at.number_input(key="explore_upload_index").set_value(2).run()
    assert not at.exception and at.dataframe[-1].value["row"].iloc[0] == 9
    # Without Teff and log g in the file the page asks for them, starting at the training-range centre.
    dataset = toy_spectra(n_fingerprints=6)
    unlabelled = Dataset(dataset.spectra[[20]], dataset.wavelength, {"id": ["mystery"]})
    bare = write_table(unlabelled, tmp_path / "bare.csv").read_bytes()
    at.file_uploader(key="explore_upload").set_value(("bare.csv", bare, "text/csv")).run()
    assert not at.exception
    low, high = tiny_run.training_range["teff"]
    assert at.number_input(key="explore_upload_cp_teff").value == pytest.approx((low + high) / 2)
    at.number_input(key="explore_upload_cp_teff").set_value(5000.0).run()
    assert not at.exception and len(at.dataframe[-1].value) == 5
    # A file the run cannot compare with: a readable error, no traceback.
    at.file_uploader(key="explore_upload").set_value(("broken.fits", b"not FITS" * 60, "application/fits")).run()
    assert not at.exception and "broken.fits" in texts(at.error)


def test_a_running_projection_can_be_cancelled_on_the_page(tiny_run):
    at = open_explorer(explore_method="tsne", explore_tsne_perplexity=5.0, explore_seed=11)
    at.button(key="explore_compute").click().run()
    assert not at.exception
    at.button(key="explore_cancel").click().run()
    assert not at.exception
    name = "embed-" + explore.projection_name("z", "tsne", {"perplexity": 5.0}, seed=11)
    assert jobs.wait(tiny_run.path, name, timeout=60)["state"] == "cancelled"
    at = open_explorer(explore_method="tsne", explore_tsne_perplexity=5.0, explore_seed=11)
    assert "cancelled" in texts(at.caption) and "not computed yet" in texts(at.info)


def test_cutouts_of_a_selection_and_of_neighbours(tiny_run, monkeypatch):
    import streamlit as st
    from test_explore import synthetic_cutouts

    original = explore.load_explore_data
    images = synthetic_cutouts(72, bands=("g", "r", "z"))
    monkeypatch.setattr(explore, "load_explore_data",
                        lambda run, dataset=None: original(run, dataset, images=images, bands=("g", "r", "z")))
    st.cache_resource.clear()
    st.cache_data.clear()
    try:
        data = original(tiny_run)
        at = open_explorer(explore_rows=list(range(10)))
        cutouts = next(meta for meta in metas(at) if meta.get("linked") == "cutouts")
        assert cutouts["n_cutouts"] == 10 and cutouts["mode"] == "rgb"
        at.selectbox(key="explore_cutout_mode").set_value("r").run()
        assert next(meta for meta in metas(at) if meta.get("linked") == "cutouts")["mode"] == "r"
        at.text_input(key="explore_nn_id").set_value(str(data.ids[4])).run()
        at.button(key="explore_nn_find").click().run()
        assert not at.exception
        neighbours = next(meta for meta in metas(at) if meta.get("linked") == "neighbour_cutouts")
        assert neighbours["n_cutouts"] == 6  # the picked object and its five neighbours
    finally:
        st.cache_resource.clear()
        st.cache_data.clear()
