"""astrocore.explore: projections, colours, selections, linked views, neighbours, tags and export,
on a tiny disentangling run (the toy grid of conftest, one epoch)."""
import numpy as np
import pytest
from conftest import toy_spectra

from astrocore.app import cutouts, explore, explore_export, explore_figures, explore_neighbours
from astrocore.cli import main as cli_main
from astrocore.data.dataset import DataError
from astrocore.embeddings import ProjectionError
from astrocore.methods.disentangle import DisentanglerConfig, fit


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    dataset = toy_spectra(n_fingerprints=6)
    path = dataset.save(root / "toy.fits")
    run = fit(dataset, DisentanglerConfig.preset("fast", epochs=1, latent_dim=3, encoder="mlp"), runs_root=root / "runs",
              data_source={"kind": "file", "path": str(path)})
    return run


@pytest.fixture(scope="module")
def data(tiny_run):
    return explore.load_explore_data(tiny_run)


def test_data_has_labels_split_recon_error_and_spectra(data):
    assert len(data) == 72
    for column in ("id", "teff", "logg", "feh", "afe", "fingerprint", "split", "recon_error"):
        assert column in data.table
    assert set(data.table["split"]) <= {"train", "validation", "held out"}
    assert data.spectra.shape == (72, 240) and data.latent.shape == (72, 3)
    assert explore.colour_options(data)[:4] == ["teff", "logg", "feh", "afe"]
    assert "id " in explore.hover_texts(data)[0] and "Teff" in explore.hover_texts(data)[0]


def test_colour_kinds_are_chosen_automatically(data):
    assert explore.colour_kind(data.table["teff"], "teff") == "continuous"
    assert explore.colour_kind(data.table["fingerprint"], "fingerprint") == "categorical"
    assert explore.colour_kind(data.table["split"], "split") == "categorical"
    assert explore.colour_kind(np.arange(100) * 1.5) == "continuous"


def test_pca_projection_is_cached_and_shared_with_the_cli(tiny_run, data, tmp_path):
    coordinates = explore.compute_projection(data, "z", "pca")
    assert coordinates.shape == (72, 2)
    out = explore.projection_file(tiny_run.path, "z", "pca", {})
    assert cli_main(["embed", str(tiny_run.path), "--representation", "z", "--method", "pca", "--out", str(out)]) == 0
    np.testing.assert_allclose(explore.read_projection(tiny_run.path, "z", "pca"), coordinates)
    x = explore.compute_projection(data, "X", "pca")
    assert x.shape == (72, 2) and not np.allclose(x, coordinates)


def test_parameters_are_validated_with_clear_messages(data):
    assert explore.projection_params("umap", {"n_neighbors": "10"}) == {"n_neighbors": 10, "min_dist": 0.1}
    with pytest.raises(ProjectionError, match="perplexity"):
        explore.projection_params("tsne", {"perplexity": 0})
    with pytest.raises(ProjectionError, match="no parameter"):
        explore.projection_params("pca", {"perplexity": 5})
    with pytest.raises(ProjectionError, match="perplexity"):
        explore.compute_projection(data, "z", "tsne", {"perplexity": 30})
    a = explore.projection_file("r", "z", "umap", {"n_neighbors": 10})
    assert a != explore.projection_file("r", "z", "umap", {"n_neighbors": 11})
    assert a != explore.projection_file("r", "X", "umap", {"n_neighbors": 10})
    assert "--param" in explore.embed_command("r", "z", "tsne", {"perplexity": 5})


def test_tsne_in_the_background_job(tiny_run):
    from astrocore import jobs

    params = {"perplexity": 5}
    explore.start_projection(tiny_run.path, "z", "tsne", params)
    name = "embed-" + explore.projection_name("z", "tsne", params)
    status = jobs.wait(tiny_run.path, name, timeout=120)
    assert status["state"] == "done", status
    coordinates = explore.read_projection(tiny_run.path, "z", "tsne", params)
    assert coordinates.shape == (72, 2)
    assert explore.projection_status(tiny_run.path, "z", "tsne", params)["state"] == "done"


def test_figure_carries_full_set_rows_and_subsamples(data):
    coordinates = np.random.default_rng(0).normal(size=(72, 2))
    shown = explore.display_subset(72, max_points=30)
    assert len(shown) == 30 and np.all(np.diff(shown) > 0)
    assert len(explore.display_subset(72)) == 72
    figure = explore_figures.embedding_figure(coordinates, data.table["teff"].to_numpy(), "teff", "pca",
                                      hover=explore.hover_texts(data), shown=shown, selected=[1, 2], marked=3)
    assert sorted(np.asarray(figure.data[0].customdata).tolist()) == shown.tolist()
    assert figure.layout.dragmode == "lasso" and figure.layout.xaxis.title.text == "PC 1"
    categorical = explore_figures.embedding_figure(coordinates, data.table["fingerprint"].to_numpy(), "fingerprint", "umap")
    assert len(categorical.data) == 6


def test_selection_from_events_uses_geometry_on_the_full_set():
    coordinates = np.array([[0, 0], [1, 1], [2, 2], [3, 3], [0.5, 0.4]], float)
    lasso = {"selection": {"points": [{"customdata": 0}], "lasso": [{"x": [-1, 1.5, 1.5, -1], "y": [-1, -1, 1.5, 1.5]}],
                           "box": []}}
    assert explore.selection_indices(lasso, coordinates).tolist() == [0, 1, 4]
    box = {"selection": {"points": [], "box": [{"x": [1.5, 3.5], "y": [1.5, 3.5]}], "lasso": []}}
    assert explore.selection_indices(box, coordinates).tolist() == [2, 3]
    click = {"selection": {"points": [{"customdata": 3}, {"customdata": [1]}], "box": [], "lasso": []}}
    assert explore.selection_indices(click, coordinates).tolist() == [1, 3]
    assert explore.selection_indices({"selection": {"points": [], "box": [], "lasso": []}}, coordinates) is None
    assert explore.selection_indices(None) is None


def test_union_intersection_and_difference():
    assert explore.combine(None, [3, 1]).tolist() == [1, 3]
    assert explore.combine([1, 2], [2, 3], "union").tolist() == [1, 2, 3]
    assert explore.combine([1, 2], [2, 3], "intersection").tolist() == [2]
    assert explore.combine([1, 2], [2, 3], "difference").tolist() == [1]
    assert explore.combine([1, 2], [5], "replace").tolist() == [5]


def test_linked_views(data):
    index = np.arange(10)
    stats = explore_figures.band_statistics(data.spectra, index)
    assert stats["selection"].shape == (3, 240) and stats["rest"].shape == (3, 240)
    assert np.all(stats["selection"][0] <= stats["selection"][2])
    figure = explore_figures.selection_spectra_figure(data.wavelength, data.spectra, index)
    assert figure.layout.xaxis.title.text .startswith("Wavelength in ") and figure.layout.meta["n_selected"] == 10
    histograms = explore_figures.label_histograms_figure(data, index)
    assert histograms.layout.meta["n_selected"] == 10
    assert "10 of 72" in explore.selection_summary(data, index)


def test_nearest_neighbours(data):
    rows, distances = explore_neighbours.nearest_neighbours(data.latent, 5, k=4)
    assert len(rows) == 4 and 5 not in rows and np.all(np.diff(distances) >= 0)
    brute = np.linalg.norm(data.latent - data.latent[5], axis=1)
    brute[5] = np.inf
    np.testing.assert_allclose(distances, np.sort(brute)[:4], rtol=1e-5)
    table = explore_neighbours.neighbours_table(data, rows, distances)
    assert list(table.columns[:3]) == ["row", "id", "distance"]
    assert explore_neighbours.find_object(data, data.ids[7]) == 7
    with pytest.raises(explore.ExploreError, match="No object"):
        explore_neighbours.find_object(data, "nope")


def test_tags_are_kept_in_the_run_folder(tiny_run, data):
    explore_export.save_tag(tiny_run.path, "hot giants", data, [4, 2, 2])
    tags = explore_export.load_tags(tiny_run.path)
    assert (tiny_run.path / "tags.json").exists()
    assert tags["hot giants"]["rows"] == [2, 4]
    assert explore_export.tag_rows(data, tags["hot giants"]).tolist() == [2, 4]
    with pytest.raises(explore.ExploreError, match="empty"):
        explore_export.save_tag(tiny_run.path, "none", data, [])
    explore_export.delete_tag(tiny_run.path, "hot giants")
    assert explore_export.load_tags(tiny_run.path) == {}


@pytest.mark.parametrize("fmt", ["csv", "fits", "votable"])
def test_export_round_trips(data, fmt):
    coordinates = np.random.default_rng(1).normal(size=(72, 2))
    index = np.array([3, 9, 20])
    table = explore_export.selection_table(data, index, coordinates, "umap", "z")
    back = explore_export.read_export(explore_export.export_bytes(table, fmt), fmt)
    assert len(back) == 3
    assert [str(v) for v in back["id"]] == data.ids[index].tolist()
    np.testing.assert_allclose(back["teff"], data.table["teff"].to_numpy()[index])
    np.testing.assert_allclose(back["umap_1"], coordinates[index, 0])
    np.testing.assert_allclose(np.column_stack([np.asarray(back[f"z_{i}"], float) for i in range(3)]), data.latent[index], rtol=1e-6)
    assert [str(v) for v in back["split"]] == data.table["split"].to_numpy()[index].astype(str).tolist()


def test_decoder_beside_a_star(tiny_run, data):
    values = explore_neighbours.decoder_values(tiny_run, data, 0)
    original, generated, extrapolated = explore_neighbours.generated_at(tiny_run, data, 0, {**values, "teff": values["teff"] + 300})
    assert original.shape == generated.shape == (240,) and not extrapolated
    _, _, flagged = explore_neighbours.generated_at(tiny_run, data, 0, {**values, "teff": 9000.0})
    assert flagged


# ---------------------------------------------------------------------------- encoder features h
def test_encoder_features_h_are_the_layer_before_z(tiny_run, data):
    import torch

    assert "h" in explore.REPRESENTATIONS
    h = explore.representation_values(data, "h")
    assert h.shape == (72, tiny_run.feature_width()) == (72, tiny_run.config.encoder_hidden[-1])
    assert h.dtype == np.float32 and np.all(np.isfinite(h))
    assert explore.representation_values(data, "h") is h  # computed once, then kept
    # The (MLP) encoder's last linear layer and the latent activation applied to h give the run's z.
    model = tiny_run.model
    with torch.no_grad():
        z = model.encoder[-1](torch.as_tensor(h))
        z = model.latent_norm(z) if model.latent_norm is not None else (
            torch.sigmoid(z) if model.config.latent_activation == "sigmoid" else z)
    np.testing.assert_allclose(z.numpy(), data.latent, atol=1e-4)
    # Batching does not change the values; one star with a dict of conditional parameters works too.
    own = {name: float(data.table[name].iloc[3]) for name in tiny_run.conditional}
    np.testing.assert_allclose(tiny_run.encoder_features(data.spectra, data.table[["teff", "logg"]].to_numpy(),
                                                         batch_size=7), h, atol=1e-5)
    np.testing.assert_allclose(tiny_run.encoder_features(data.spectra[3], own)[0], h[3], atol=1e-5)
    with pytest.raises(DataError, match="conditional"):
        tiny_run.encoder_features(data.spectra[:2], [[4000.0]])


def test_h_works_with_projections_neighbours_and_the_cli(tiny_run, data):
    coordinates = explore.compute_projection(data, "h", "pca")
    assert coordinates.shape == (72, 2)
    out = explore.projection_file(tiny_run.path, "h", "pca", {})
    assert cli_main(["embed", str(tiny_run.path), "--representation", "h", "--method", "pca", "--out", str(out)]) == 0
    np.testing.assert_allclose(explore.read_projection(tiny_run.path, "h", "pca"), coordinates, rtol=1e-4, atol=1e-5)
    assert "--representation h" in " ".join(explore.embed_command(tiny_run.path, "h", "umap"))
    rows, distances = explore_neighbours.nearest_neighbours(explore.representation_values(data, "h"), 5, k=4)
    assert len(rows) == 4 and 5 not in rows and np.all(np.diff(distances) >= 0)
    table = explore_export.selection_table(data, rows, coordinates, "pca", "h")
    assert table.meta["repr"] == "h" and len(table) == 4


def test_h_needs_a_model_and_its_spectra(data):
    without = explore.ExploreData(run_id="r", ids=data.ids, table=data.table, latent=data.latent, spectra=None,
                                  wavelength=None)
    with pytest.raises(explore.ExploreError, match="Encoder features h need the run's data"):
        explore.representation_values(without, "h")


# ---------------------------------------------------------------------------- neighbours of an uploaded spectrum
def _csv_upload(dataset, tmp_path, name="one.csv") -> bytes:
    from astrocore.data.readers import write_table

    path = write_table(dataset, tmp_path / name)
    return path.read_bytes()


def test_neighbours_of_an_uploaded_spectrum(tiny_run, data, tmp_path):
    dataset = toy_spectra(n_fingerprints=6)
    payload = _csv_upload(dataset.subset([5, 9]), tmp_path)
    spectrum = explore_neighbours.read_upload("two.csv", payload, tiny_run)
    assert spectrum.n_in_file == 2 and not spectrum.resampled and spectrum.missing == ()
    assert spectrum.conditional == {"teff": 4500.0, "logg": 3.0} and spectrum.flux.shape == (240,)
    for representation in ("z", "h", "X"):  # the uploaded star is one of the run's: it is its own nearest
        rows, distances = explore_neighbours.upload_neighbours(tiny_run, data, spectrum, representation, k=3)
        assert rows[0] == 5 and distances[0] < 1e-3 and len(rows) == 3 and np.all(np.diff(distances) >= 0)
    second = explore_neighbours.read_upload("two.csv", payload, tiny_run, index=1)
    assert explore_neighbours.upload_neighbours(tiny_run, data, second, "z", k=1)[0].tolist() == [9]
    with pytest.raises(explore.ExploreError, match="2 spectra"):
        explore_neighbours.read_upload("two.csv", payload, tiny_run, index=2)
    figure = explore_figures.neighbours_figure(data.wavelength, spectrum.flux, data.spectra, rows, ["upload", "a", "b", "c"])
    assert len(figure.data) == 4 and figure.layout.xaxis.title.text .startswith("Wavelength in ")


def test_an_upload_on_another_grid_is_resampled_and_missing_labels_are_asked_for(tiny_run, data, tmp_path):
    from astrocore.data.dataset import Dataset

    dataset = toy_spectra(n_fingerprints=6)
    fine = np.linspace(8455.0, 8705.0, 1001)
    flux = np.array([np.interp(fine, dataset.wavelength, dataset.spectra[20])], np.float32)
    unlabelled = Dataset(flux, fine, {"id": ["mystery"]})
    spectrum = explore_neighbours.read_upload("fine.csv", _csv_upload(unlabelled, tmp_path, "fine.csv"), tiny_run)
    assert spectrum.resampled and spectrum.missing == ("teff", "logg") and spectrum.conditional == {}
    np.testing.assert_allclose(spectrum.flux, dataset.spectra[20], atol=1e-2)  # interpolated twice
    with pytest.raises(explore.ExploreError, match="teff"):
        explore_neighbours.query_vector(tiny_run, spectrum, "z")
    assert explore_neighbours.query_vector(tiny_run, spectrum, "X").shape == (240,)  # X needs no labels
    defaults = explore_neighbours.conditional_defaults(tiny_run)
    low, high = tiny_run.training_range["teff"]
    assert defaults["teff"] == pytest.approx((low + high) / 2)
    rows, _ = explore_neighbours.upload_neighbours(tiny_run, data, spectrum, "h", k=2, conditional={"teff": 5000.0, "logg": 3.0})
    assert len(rows) == 2
    with pytest.raises(explore.ExploreError, match="expects 240 pixels"):
        explore_neighbours.read_upload("fine.csv", _csv_upload(unlabelled, tmp_path, "fine.csv"), tiny_run, resample=False)


@pytest.mark.parametrize("name, payload, message", [
    ("broken.fits", b"this is not FITS" * 40, "broken.fits"),
    ("empty.csv", b"", "empty"),
    ("notes.pdf", b"%PDF-1.4", "not accepted"),
    ("huge.csv", b"x" * 3 * 1024 * 1024, "limit"),
])
def test_bad_uploads_are_refused_with_a_message(tiny_run, name, payload, message):
    with pytest.raises(explore.ExploreError, match=message):
        explore_neighbours.read_upload(name, payload, tiny_run, max_mb=2)


def test_an_upload_from_another_survey_is_refused(tiny_run):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "assets" / "example_apogee_spectra.fits"
    if not example.exists():
        pytest.skip("assets/example_apogee_spectra.fits is missing")
    with pytest.raises(explore.ExploreError, match="cannot be compared with this run.*7214 pixels.*240 pixels"):
        explore_neighbours.read_upload(example.name, example.read_bytes(), tiny_run)


# ---------------------------------------------------------------------------- cutouts
def synthetic_cutouts(n: int, bands=("u", "g", "r", "i", "z"), size: int = 16, seed: int = 0) -> np.ndarray:
    """A star-like Gaussian blob per object on a noisy sky; brighter in redder bands for odd rows."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-0.5 * (x**2 + y**2) / 2.0**2)
    images = rng.normal(0, 0.02, size=(n, len(bands), size, size)).astype(np.float32)
    for row in range(n):
        for band in range(len(bands)):
            images[row, band] += blob * (1 + band if row % 2 else len(bands) - band)
    return images


def test_band_order_and_rgb_choice():
    assert cutouts.rgb_bands(["u", "g", "r", "i", "z"]) == (3, 2, 1)  # i, r, g -> R, G, B
    assert cutouts.rgb_bands(["z", "g", "r"]) == (0, 2, 1)  # reddest -> R whatever the order given
    assert cutouts.rgb_bands(["W1", "sdss_g"]) == (0, 0, 1)
    assert cutouts.bands_blue_to_red(["b1", "b2", "b3"]) == [0, 1, 2]  # unknown names: as given
    assert cutouts.band_wavelength("HSC-i") == cutouts.BAND_WAVELENGTHS["i"]
    modes = cutouts.cutout_modes(["g", "r", "z"])
    assert list(modes) == ["rgb", "g", "r", "z"] and "z, r, g" in modes["rgb"]


def test_cutouts_as_rgb_composites_and_single_bands():
    images = synthetic_cutouts(6)
    rgb = cutouts.cutout_rgb(images, ["u", "g", "r", "i", "z"])
    assert rgb.shape == (6, 16, 16, 3) and rgb.dtype == np.uint8
    centre = rgb[:, 8, 8].astype(int)
    assert np.all(centre.sum(axis=1) > rgb[:, 0, 0].astype(int).sum(axis=1))  # the star is brighter than the sky
    assert centre[1, 0] > centre[1, 2] and centre[0, 2] > centre[0, 0]  # red rows redder, blue rows bluer
    grey = cutouts.cutout_rgb(images, ["u", "g", "r", "i", "z"], mode="r")
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    with pytest.raises(cutouts.CutoutError, match="mode"):
        cutouts.cutout_rgb(images, ["u", "g", "r", "i", "z"], mode="K")


def test_cutout_grid_figure(data):
    images = synthetic_cutouts(72)
    figure = cutouts.cutout_grid_figure(images, ["u", "g", "r", "i", "z"], [3, 1, 4, 1, 5], names=list("abcde"),
                                        columns=4)
    assert len(figure.data) == 1 and figure.data[0].type == "image"
    assert figure.data[0].source.startswith("data:image/png;base64,")
    assert figure.layout.meta["linked"] == "cutouts" and figure.layout.meta["n_cutouts"] == 5
    assert [a.text for a in figure.layout.annotations] == list("abcde")
    many = cutouts.cutout_grid_figure(images, ["u", "g", "r", "i", "z"], np.arange(72), mode="g", max_cutouts=10)
    assert many.layout.meta["n_cutouts"] == 10 and many.layout.meta["mode"] == "g"


def test_explore_data_carries_images(tiny_run, data):
    images = synthetic_cutouts(72, bands=("g", "r", "i"))
    with_images = explore.load_explore_data(tiny_run, images=images, bands=["g", "r", "i"])
    assert with_images.images.shape == (72, 3, 16, 16) and with_images.bands == ("g", "r", "i")
    assert data.images is None and data.bands is None
    with pytest.raises(explore.ExploreError, match="band names"):
        explore.load_explore_data(tiny_run, images=images, bands=["g", "r"])
    with pytest.raises(explore.ExploreError, match="n_objects=72"):
        explore.load_explore_data(tiny_run, images=images[:10], bands=["g", "r", "i"])
    unnamed = explore.load_explore_data(tiny_run, images=images)
    assert unnamed.bands == ("band 1", "band 2", "band 3")


# ---------------------------------------------------------------------------- cancel, speed helpers
def test_a_running_projection_can_be_cancelled(tiny_run):
    params = {"perplexity": 6}
    explore.start_projection(tiny_run.path, "z", "tsne", params, seed=3)
    status = explore.cancel_projection(tiny_run.path, "z", "tsne", params, seed=3, wait=True)
    assert status["state"] == "cancelled", status
    assert explore.read_projection(tiny_run.path, "z", "tsne", params, seed=3) is None
    assert explore.projection_status(tiny_run.path, "z", "tsne", params, seed=3)["state"] == "cancelled"
    with pytest.raises(explore.ExploreError, match="No projection job"):
        explore.cancel_projection(tiny_run.path, "X", "umap", {})


def test_band_statistics_subsample_large_groups(data):
    exact = explore_figures.band_statistics(data.spectra, np.arange(30), max_spectra=None)
    np.testing.assert_allclose(exact["selection"], np.percentile(data.spectra[:30], [16, 50, 84], axis=0), atol=1e-6)
    np.testing.assert_allclose(exact["rest"], np.percentile(data.spectra[30:], [16, 50, 84], axis=0), atol=1e-6)
    sampled = explore_figures.band_statistics(data.spectra, np.arange(30), max_spectra=20)
    assert sampled["selection"].shape == (3, 240)
    np.testing.assert_allclose(sampled["selection"], explore_figures.band_statistics(data.spectra, np.arange(30),
                                                                              max_spectra=20)["selection"])
    assert np.abs(sampled["selection"][1] - exact["selection"][1]).max() < 0.1


def test_events_and_when_the_chart_is_left_alone():
    coordinates = np.array([[0, 0], [1, 1], [2, 2], [3, 3]], float)
    lasso = {"selection": {"points": [{"customdata": 0}, {"customdata": 1}],
                           "lasso": [{"x": [-1, 1.5, 1.5, -1], "y": [-1, -1, 1.5, 1.5]}], "box": []}}
    kind, rows, shapes = explore.read_event(lasso, coordinates)
    assert kind == "lasso" and rows.tolist() == [0, 1] and shapes
    # A click while the lasso is still drawn: plotly sends the old lasso with the clicked point.
    click = {"selection": {**lasso["selection"], "points": [{"customdata": 3}]}}
    assert explore.read_event(click, coordinates, shapes)[:2][0] == "click"
    assert explore.read_event(click, coordinates, shapes)[1].tolist() == [3]
    assert explore.read_event(None, coordinates)[0] == "none"
    assert explore.event_signature(lasso) != explore.event_signature(click) and explore.event_signature(None) == ""
    # The chart keeps its own lasso when it shows exactly the selection; otherwise it is redrawn.
    assert explore.selection_overlay([1, 0], [0, 1], same_chart=True) == "keep"
    assert explore.selection_overlay([0, 1, 2], [0, 1], same_chart=True) == "highlight"  # a union
    assert explore.selection_overlay([0, 1], [0, 1], same_chart=False) == "highlight"  # e.g. another colour
    assert explore.selection_overlay([], [0, 1], same_chart=True) == "clear"
    assert explore.selection_overlay([], None, same_chart=True) == "none"
    figure = explore_figures.embedding_figure(coordinates, np.arange(4.0), "teff", "pca", selected=[1, 2], revision=2)
    assert list(figure.data[0].selectedpoints) == [1, 2] and figure.layout.meta["revision"] == 2
    assert explore_figures.embedding_figure(coordinates, np.arange(4.0), "teff", "pca").data[0].selectedpoints is None


def test_page_state_through_lasso_click_union_and_clear():
    coordinates = np.array([[0, 0], [1, 1], [2, 2], [3, 3]], float)
    state = {}

    def lasso(x0, x1, points=()):
        return {"selection": {"points": [{"customdata": p} for p in points], "box": [],
                              "lasso": [{"x": [x0, x1, x1, x0], "y": [x0, x0, x1, x1]}]}}

    assert explore.scatter_highlight(state, [], "a") == (None, 0)  # the chart as first drawn
    explore.apply_chart_event(state, lasso(-1, 1.5, (0, 1)), coordinates)
    assert state["explore_rows"] == [0, 1]
    assert explore.scatter_highlight(state, state["explore_rows"], "a") == (None, 0)  # plotly shows it: unchanged
    explore.apply_chart_event(state, lasso(-1, 1.5, (0, 1)), coordinates)  # the same event again: no-op
    explore.apply_chart_event(state, lasso(1.5, 3.5, (2, 3)), coordinates, "union")
    assert state["explore_rows"] == [0, 1, 2, 3]
    highlight, revision = explore.scatter_highlight(state, state["explore_rows"], "a")
    assert highlight.tolist() == [0, 1, 2, 3] and revision == 0  # the union must be drawn
    explore.apply_chart_event(state, {"selection": {**lasso(1.5, 3.5)["selection"], "points": [{"customdata": 1}]}},
                              coordinates)
    assert state["explore_pick"] == 1 and state["explore_rows"] == [0, 1, 2, 3]  # a click picks, keeps rows
    # Clearing while the chart still shows its lasso: a new revision mounts a clean chart.
    explore.apply_chart_event(state, lasso(-1, 0.5, (0,)), coordinates)
    explore.scatter_highlight(state, state["explore_rows"], "b")
    state["explore_rows"] = []
    assert explore.scatter_highlight(state, [], "b") == (None, 1)
    state["explore_skip_event"] = True  # e.g. another run: the chart's old event means nothing
    explore.apply_chart_event(state, lasso(-5, 5, (0, 1, 2, 3)), coordinates)
    assert state["explore_rows"] == [] and "explore_skip_event" not in state


def test_explorer_spectra_break_at_detector_gaps():
    from astrocore.data.simulators.apogee_grid import apogee_wavelength

    wavelength = apogee_wavelength()
    spectra = np.ones((4, wavelength.size), np.float32)
    neighbours = explore_figures.neighbours_figure(wavelength, spectra[0], spectra, [1, 2], ["q", "a", "b"],
                                                   offset=0.1, xrange=(15700.0, 15800.0))
    for trace in neighbours.data:
        assert int(np.isnan(np.asarray(trace.x, float)).sum()) == 2  # three chips, two gaps
    assert list(neighbours.layout.xaxis.range) == [15700.0, 15800.0]
    assert np.nanmax(neighbours.data[2].y) == pytest.approx(0.8)  # the second neighbour sits 2 x 0.1 lower
    selection = explore_figures.selection_spectra_figure(wavelength, spectra, np.array([0, 1]))
    assert all(int(np.isnan(np.asarray(trace.y, float)).sum()) == 2 for trace in selection.data)


def test_an_upload_unlike_the_training_data_is_flagged_with_numbers(tiny_run, data, tmp_path):
    dataset = toy_spectra(n_fingerprints=6)
    typical = explore_neighbours.typical_neighbour_distance(data.values("z"))
    own = explore_neighbours.read_upload("own.csv", _csv_upload(dataset.subset([5]), tmp_path), tiny_run)
    rows, distances = explore_neighbours.upload_neighbours(tiny_run, data, own, "z", k=3)
    check = explore_neighbours.novelty(tiny_run, distances, typical, own.flux, own.conditional)
    assert not check.unusual and check.recon_rms is not None
    strange = dataset.subset([5])
    strange.spectra[:] = 1.0 - 0.6 * np.abs(np.sin(np.arange(240) / 3.0))  # nothing like a stellar spectrum
    odd = explore_neighbours.read_upload("odd.csv", _csv_upload(strange, tmp_path, "odd.csv"), tiny_run)
    rows, distances = explore_neighbours.upload_neighbours(tiny_run, data, odd, "X", k=3)
    check = explore_neighbours.novelty(tiny_run, distances, explore_neighbours.typical_neighbour_distance(data.values("X")),
                                       odd.flux, odd.conditional)
    assert check.unusual and check.recon_rms > 3 * check.recon_rms_p95
    assert "RMS" in check.message() and f"{check.distance:.3g}" in check.message()
