"""astrocore.explore: projections, colours, selections, linked views, neighbours, tags and export,
on a tiny disentangling run (the toy grid of conftest, one epoch)."""
import numpy as np
import pytest
from conftest import toy_spectra

from astrocore import explore
from astrocore.cli import main as cli_main
from astrocore.models.disentangler import DisentanglerConfig, fit


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    dataset = toy_spectra(n_fingerprints=6)
    path = dataset.save(root / "toy.fits")
    run = fit(dataset, DisentanglerConfig.preset("fast", epochs=1, latent_dim=3), runs_root=root / "runs",
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
    with pytest.raises(explore.ExploreError, match="perplexity"):
        explore.projection_params("tsne", {"perplexity": 0})
    with pytest.raises(explore.ExploreError, match="no parameter"):
        explore.projection_params("pca", {"perplexity": 5})
    with pytest.raises(explore.ExploreError, match="perplexity"):
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
    figure = explore.embedding_figure(coordinates, data.table["teff"].to_numpy(), "teff", "pca",
                                      hover=explore.hover_texts(data), shown=shown, selected=[1, 2], marked=3)
    assert sorted(np.asarray(figure.data[0].customdata).tolist()) == shown.tolist()
    assert figure.layout.dragmode == "lasso" and figure.layout.xaxis.title.text == "PC 1"
    categorical = explore.embedding_figure(coordinates, data.table["fingerprint"].to_numpy(), "fingerprint", "umap")
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
    stats = explore.band_statistics(data.spectra, index)
    assert stats["selection"].shape == (3, 240) and stats["rest"].shape == (3, 240)
    assert np.all(stats["selection"][0] <= stats["selection"][2])
    figure = explore.selection_spectra_figure(data.wavelength, data.spectra, index)
    assert figure.layout.xaxis.title.text == "Wavelength [Å]" and figure.layout.meta["n_selected"] == 10
    histograms = explore.label_histograms_figure(data, index)
    assert histograms.layout.meta["n_selected"] == 10
    assert "10 of 72" in explore.selection_summary(data, index)


def test_nearest_neighbours(data):
    rows, distances = explore.nearest_neighbours(data.latent, 5, k=4)
    assert len(rows) == 4 and 5 not in rows and np.all(np.diff(distances) >= 0)
    brute = np.linalg.norm(data.latent - data.latent[5], axis=1)
    brute[5] = np.inf
    np.testing.assert_allclose(distances, np.sort(brute)[:4], rtol=1e-5)
    table = explore.neighbours_table(data, rows, distances)
    assert list(table.columns[:3]) == ["row", "id", "distance"]
    assert explore.find_object(data, data.ids[7]) == 7
    with pytest.raises(explore.ExploreError, match="No object"):
        explore.find_object(data, "nope")


def test_tags_are_kept_in_the_run_folder(tiny_run, data):
    explore.save_tag(tiny_run.path, "hot giants", data, [4, 2, 2])
    tags = explore.load_tags(tiny_run.path)
    assert (tiny_run.path / "tags.json").exists()
    assert tags["hot giants"]["rows"] == [2, 4]
    assert explore.tag_rows(data, tags["hot giants"]).tolist() == [2, 4]
    with pytest.raises(explore.ExploreError, match="empty"):
        explore.save_tag(tiny_run.path, "none", data, [])
    explore.delete_tag(tiny_run.path, "hot giants")
    assert explore.load_tags(tiny_run.path) == {}


@pytest.mark.parametrize("fmt", ["csv", "fits", "votable"])
def test_export_round_trips(data, fmt):
    coordinates = np.random.default_rng(1).normal(size=(72, 2))
    index = np.array([3, 9, 20])
    table = explore.selection_table(data, index, coordinates, "umap", "z")
    back = explore.read_export(explore.export_bytes(table, fmt), fmt)
    assert len(back) == 3
    assert [str(v) for v in back["id"]] == data.ids[index].tolist()
    np.testing.assert_allclose(back["teff"], data.table["teff"].to_numpy()[index])
    np.testing.assert_allclose(back["umap_1"], coordinates[index, 0])
    np.testing.assert_allclose(np.column_stack([np.asarray(back[f"z_{i}"], float) for i in range(3)]), data.latent[index], rtol=1e-6)
    assert [str(v) for v in back["split"]] == data.table["split"].to_numpy()[index].astype(str).tolist()


def test_decoder_beside_a_star(tiny_run, data):
    values = explore.decoder_values(tiny_run, data, 0)
    original, generated, extrapolated = explore.generated_at(tiny_run, data, 0, {**values, "teff": values["teff"] + 300})
    assert original.shape == generated.shape == (240,) and not extrapolated
    _, _, flagged = explore.generated_at(tiny_run, data, 0, {**values, "teff": 9000.0})
    assert flagged
