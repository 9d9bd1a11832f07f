"""The explorer on large runs (small sizes here): fit-on-sample projections, the display plan (a
capped sample over a density image), zoom windows, decimated spectra and the linked figures."""
import numpy as np
import plotly.io as pio

from astrocore import embeddings
from astrocore.app import explore, explore_figures, explore_scale, plots


def blobs(n, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (4, dim))
    member = rng.integers(0, 4, n)
    return (centres[member] + rng.normal(0, 0.5, (n, dim))).astype(np.float32), member


def test_fit_rows_are_a_reproducible_sample():
    assert np.array_equal(embeddings.fit_rows(50, 100), np.arange(50))
    rows = embeddings.fit_rows(1000, 100, seed=3)
    assert len(rows) == 100 and np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, embeddings.fit_rows(1000, 100, seed=3))
    assert np.array_equal(embeddings.fit_rows(1000, None), np.arange(1000))


def test_pca_fitted_on_a_sample_places_every_object(tmp_path):
    values, member = blobs(3000)
    full, info = embeddings.project(values, "pca", folder=tmp_path, use_cache=False, fit_sample=None)
    sampled, info = embeddings.project(values, "pca", key="k", folder=tmp_path, fit_sample=500)
    assert sampled.shape == (3000, 2) and np.isfinite(sampled).all()
    assert info["fit_sample"] == 500 and info["n"] == 3000 and "transform_seconds" in info
    # the same map up to the sign of each axis
    for axis in range(2):
        assert abs(np.corrcoef(full[:, axis], sampled[:, axis])[0, 1]) > 0.99
    again, _ = embeddings.project(values, "pca", key="k", folder=tmp_path, fit_sample=500)  # from the cache
    np.testing.assert_array_equal(again, sampled)


def test_tsne_fitted_on_a_sample_keeps_clusters_apart(tmp_path):
    values, member = blobs(600)
    coordinates, info = embeddings.project(values, "tsne", folder=tmp_path, use_cache=False, fit_sample=200,
                                           perplexity=10)
    assert coordinates.shape == (600, 2) and info["fit_sample"] == 200
    centres = np.array([coordinates[member == k].mean(axis=0) for k in range(4)])
    spread = max(np.median(np.hypot(*(coordinates[member == k] - centres[k]).T)) for k in range(4))
    gaps = [np.hypot(*(centres[a] - centres[b])) for a in range(4) for b in range(a + 1, 4)]
    assert min(gaps) > 2 * spread  # transformed points land in their own cluster


def test_display_plan_caps_points_and_adds_a_density_of_all(monkeypatch):
    monkeypatch.setattr(explore, "MAX_DISPLAY", 100)
    coordinates = np.random.default_rng(0).normal(size=(5000, 2)).astype(np.float32)
    plan = explore_scale.display_plan(coordinates, bins=40)
    assert len(plan.shown) == 100 and plan.n_inside == 5000 and not plan.complete
    xc, yc, counts = plan.density
    assert counts.shape == (40, 40) and counts.sum() == 5000
    assert "Drawing 100 of the 5,000 objects" in plan.caption()
    small = explore_scale.display_plan(coordinates[:80])
    assert small.density is None and small.complete and small.caption() == ""


def test_zoom_window_draws_the_objects_inside_and_keeps_the_sample(monkeypatch):
    monkeypatch.setattr(explore, "MAX_DISPLAY", 100)
    coordinates = np.random.default_rng(1).normal(size=(5000, 2)).astype(np.float32)
    rank = explore_scale.priorities(5000)
    whole = explore_scale.display_plan(coordinates, rank=rank)
    near = np.flatnonzero(np.hypot(coordinates[:, 0] - 2, coordinates[:, 1] - 2) < 0.3)
    window = explore_scale.window_around(coordinates, near)
    assert window[0] < coordinates[near, 0].min() and window[1] > coordinates[near, 0].max()
    zoomed = explore_scale.display_plan(coordinates, window=window, rank=rank)
    assert zoomed.complete and zoomed.density is None and "all" in zoomed.caption()
    assert set(near) <= set(zoomed.shown.tolist())
    inside_whole = set(whole.shown[explore_scale.inside(coordinates[whole.shown], window)].tolist())
    assert inside_whole <= set(zoomed.shown.tolist())  # zooming adds points, it does not reshuffle them
    assert explore_scale.window_around(coordinates, []) is None


def test_embedding_figure_with_density_and_window():
    coordinates = np.random.default_rng(2).normal(size=(500, 2)).astype(np.float32)
    plan = explore_scale.display_plan(coordinates, max_points=50, bins=20)
    figure = explore_figures.embedding_figure(coordinates, coordinates[:, 0], "teff", "umap", shown=plan.shown,
                                              density=plan.density, window=(-1, 1, -2, 2))
    assert figure.data[0].type == "heatmap" and figure.data[1].type == "scattergl"
    assert len(figure.data[1].x) == 50 and sorted(figure.data[1].customdata) == plan.shown.tolist()
    assert list(figure.layout.xaxis.range) == [-1, 1] and figure.layout.meta["density"]


def test_decimated_spectra_keep_extremes_and_gaps():
    wavelength = np.concatenate([np.linspace(15100, 15800, 3000), np.linspace(15860, 16420, 2500),
                                 np.linspace(16480, 16950, 1714)])
    flux = 1 - 0.3 * np.random.default_rng(0).random(len(wavelength))
    flux[1234] = 0.2  # a deep line
    wl, (decimated,) = plots.gapped(wavelength, flux, max_points=1000)
    assert len(wl) <= 1100 and np.isnan(wl).sum() == 2
    assert np.isclose(np.nanmin(decimated), 0.2) and np.all(np.diff(wl[np.isfinite(wl)]) > 0)
    figure = plots.spectrum_figure(wavelength, {"Original": flux, "Generated": flux * 0.99})
    assert all(len(trace.x) <= plots.DISPLAY_POINTS + 10 for trace in figure.data)
    zoomed = plots.spectrum_figure(wavelength, {"Original": flux}, xrange=(15300.0, 15340.0))
    step = np.diff(np.asarray(zoomed.data[0].x, float))
    assert np.nanmax(step) < 0.3  # every pixel of the window


def test_linked_spectra_on_display_pixels_are_small_and_gapped():
    rng = np.random.default_rng(0)
    wavelength = np.concatenate([np.linspace(15100, 15800, 3000), np.linspace(15860, 16950, 4214)])
    spectra = (1 - 0.2 * rng.random((300, len(wavelength)))).astype(np.float32)
    pixels = explore_figures.display_pixels(wavelength, spectra, max_points=1500)
    assert len(pixels) < 1700 and 2999 in pixels and 3000 in pixels
    figure = explore_figures.selection_spectra_figure(wavelength, spectra, np.arange(50), pixels=pixels)
    assert len(figure.data) == 6 and figure.layout.meta["n_selected"] == 50
    x = np.asarray(figure.data[0].x, float)
    assert np.isnan(x).sum() == 1 and len(x) == len(pixels) + 1
    assert len(pio.to_json(figure)) < 200_000
    full = explore_figures.band_statistics(spectra, np.arange(50))
    part = explore_figures.band_statistics(spectra, np.arange(50), pixels=pixels)
    np.testing.assert_allclose(part["selection"], full["selection"][:, pixels])
