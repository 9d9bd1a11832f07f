import numpy as np
import pytest
from astropy.table import Table

from astrocore.embeddings import project
from astrocore.evaluation import (generation_targets, grid_step, probe_r2, probe_scores, representation_scores,
                                  twins_score)
from astrocore.methods.disentangle import DisentanglerConfig, fit
from astrocore.methods.disentangle.evaluate import evaluate_disentangler


def test_probes_find_information_and_report_its_absence():
    rng = np.random.default_rng(0)
    target = rng.uniform(-1, 1, 600)
    informative = np.stack([np.sin(2 * target), target**3, rng.normal(size=600)], axis=1)
    noise = rng.normal(size=(600, 3))
    for kind in ("mlp", "knn", "poly2"):
        assert probe_r2(informative[:400], target[:400], informative[400:], target[400:], kind)[0] > 0.9
        assert probe_r2(noise[:400], target[:400], noise[400:], target[400:], kind)[0] < 0.15


def test_probes_of_several_labels_score_each_as_alone():
    # Shared input transform (PCA of wide inputs) and one ridge fit for all labels: the same
    # numbers as one probe per label, and a label that does not vary stays NaN.
    rng = np.random.default_rng(3)
    labels = rng.uniform(-1, 1, (500, 2))
    wide = np.concatenate([labels @ rng.normal(size=(2, 150)), 0.3 * rng.normal(size=(500, 150))], axis=1)
    targets = np.stack([labels[:, 0], labels[:, 1] ** 2, np.full(500, 0.3)], axis=1)
    together = probe_scores(wide[:350], targets[:350], wide[350:], targets[350:], ("knn", "poly2"))
    for kind in ("knn", "poly2"):
        for column in (0, 1):
            alone = probe_r2(wide[:350], targets[:350, column], wide[350:], targets[350:, column], kind)[0]
            assert together[kind][column] == pytest.approx(alone, abs=1e-9), (kind, column)
        assert np.isnan(together[kind][2])
    assert together["poly2"][0] > 0.9
    with pytest.raises(ValueError, match="probe kind"):
        probe_scores(wide[:350], targets[:350], wide[350:], targets[350:], ("knn", "svm"))


def test_knn_probe_uses_every_training_object_the_fitted_probes_a_subset():
    # A rapidly varying label: ten neighbours among 60 references read it poorly, among 3000 well.
    rng = np.random.default_rng(5)
    feature = rng.uniform(0, 1, (3500, 1))
    target = np.sin(40 * feature[:, 0])
    train, test = slice(0, 3000), slice(3000, None)
    dense = probe_r2(feature[train], target[train], feature[test], target[test], "knn", max_fit_objects=60)[0]
    sparse = probe_r2(feature[:60], target[:60], feature[test], target[test], "knn")[0]
    assert dense > 0.95 and sparse < 0.8
    # The MLP is fitted on the seeded 60-object subset only, so it scores as if given just those.
    subset = np.sort(np.random.default_rng(0).choice(3000, size=60, replace=False))
    limited = probe_r2(feature[train], target[train], feature[test], target[test], "mlp", max_fit_objects=60)[0]
    alone = probe_r2(feature[subset], target[subset], feature[test], target[test], "mlp")[0]
    assert limited == pytest.approx(alone, abs=0.05)


def test_probe_is_fair_to_tiny_latent_spreads():
    # A sigmoid latent with a spread of 1e-4 holds the information as well as a wide one.
    rng = np.random.default_rng(1)
    target = rng.uniform(0, 1, 500)
    tiny = 0.5 + 1e-4 * np.stack([target, rng.normal(size=500)], axis=1)
    assert probe_r2(tiny[:350], target[:350], tiny[350:], target[350:], "mlp")[0] > 0.9


def test_a_label_that_does_not_vary_has_no_r2():
    # One held-out chemistry: its [alpha/Fe] is one value up to float32 rounding, so R^2 is undefined.
    rng = np.random.default_rng(2)
    features = rng.normal(size=(300, 4))
    varying = rng.uniform(-1, 1, 300)
    held_out_constant = np.where(np.arange(300) < 200, varying, np.float32(0.1) + 1e-12 * rng.normal(size=300))
    targets = np.stack([varying, held_out_constant, np.full(300, 0.3)], axis=1)
    scores = probe_r2(features[:200], targets[:200], features[200:], targets[200:], "knn")
    assert np.isfinite(scores[0]) and np.isnan(scores[1]) and np.isnan(scores[2])
    from astropy.table import Table

    from astrocore.evaluation import representation_scores
    labels = Table({"teff": varying, "afe": held_out_constant})
    result = representation_scores(features[:200], labels[:200], features[200:], labels[200:], ("teff", "afe"))
    assert result["r2"]["afe"] is None and isinstance(result["r2"]["teff"], float)


def test_twins_score_extremes():
    fingerprint = np.repeat(np.arange(20), 6)
    grid_point = np.tile(np.arange(6), 20)
    rng = np.random.default_rng(0)
    chemistry = rng.normal(size=(20, 3))[fingerprint] + 1e-3 * rng.normal(size=(120, 3))
    assert twins_score(chemistry, fingerprint, grid_point, k=5) == pytest.approx(1.0)
    teff_like = np.stack([grid_point + 0.01 * rng.normal(size=120), rng.normal(size=120)], axis=1)
    assert twins_score(teff_like, fingerprint, grid_point, k=5) < 0.3


def test_generation_targets_move_only_requested_labels():
    labels = Table({"teff": np.repeat([4000.0, 4200.0, 4400.0], 4), "logg": np.tile([1.0, 1.2, 1.4, 1.6], 3),
                    "feh": np.arange(12.0)})
    index = np.arange(12)
    inside = generation_targets(labels, index, ("teff", "logg"), extrapolate=False)
    np.testing.assert_array_equal(inside["feh"], labels["feh"])
    assert set(inside["teff"]) <= {4000.0, 4200.0, 4400.0}
    outside = generation_targets(labels, index, ("teff", "logg"), extrapolate=True)
    beyond = (np.asarray(outside["teff"]) > 4400) | (np.asarray(outside["teff"]) < 4000) | \
             (np.asarray(outside["logg"]) > 1.6 + 1e-9) | (np.asarray(outside["logg"]) < 1.0 - 1e-9)
    assert beyond.all()
    assert grid_step(np.asarray(labels["teff"])) == pytest.approx(200.0)


def test_evaluate_a_trained_run(toy_dataset, tmp_path):
    run = fit(toy_dataset, DisentanglerConfig.preset("fast", epochs=2, latent_dim=2, batch_size=32, twin_weight=0.0),
              runs_root=tmp_path)
    truth = {tuple(row): spectrum for row, spectrum in
             zip(np.asarray(toy_dataset.label_array(("teff", "logg", "feh"))), toy_dataset.spectra)}

    def render(labels):  # the toy set's own spectra where they exist, as a simulator would give
        rows = np.stack([np.asarray(labels[n], float) for n in ("teff", "logg", "feh")], axis=1)
        return np.stack([truth.get(tuple(row), np.ones(toy_dataset.n_pixels)) for row in rows])

    metrics = evaluate_disentangler(run, toy_dataset, render=render, max_objects=200)
    assert set(metrics["r2"]) == {"teff", "logg", "feh", "afe"}
    assert 0 <= metrics["twins_top10"] <= 1
    assert metrics["recon_mse"] > 0 and metrics["gen_rmse"] > 0 and metrics["decode_ms"] > 0
    by_teff = metrics["recon_mse_by_cp"]
    assert by_teff["parameter"] == "teff"
    # The bins partition the held-out objects, so their weighted mean is the overall error.
    weighted = np.average(by_teff["mean"], weights=by_teff["count"])
    assert weighted == pytest.approx(metrics["recon_mse"], rel=1e-4)


def test_error_by_parameter_keeps_grid_nodes_whole():
    from astrocore.evaluation import error_by_parameter

    teff = np.repeat(np.arange(3200.0, 6001.0, 200.0), 4)  # 15 grid nodes, 4 stars each
    errors = np.where(teff < 4000, 10.0, 1.0)
    result = error_by_parameter(errors, teff, "teff", n_bins=5)
    assert result["count"] == [12] * 5 and sum(result["count"]) == len(teff)
    assert result["low"] == [3200.0, 3800.0, 4400.0, 5000.0, 5600.0]
    assert result["high"] == [3600.0, 4200.0, 4800.0, 5400.0, 6000.0]
    assert result["mean"][0] == 10.0 and result["mean"][-1] == 1.0
    assert result["mean"][1] == pytest.approx((10 * 4 + 1 * 8) / 12)  # 3800 K is cool, 4000 and 4200 K not
    single = error_by_parameter(np.ones(6), np.full(6, 4500.0), "teff")
    assert single["count"] == [6] and single["low"] == single["high"] == [4500.0]


def test_projection_methods_and_cache(tmp_path):
    values = np.random.default_rng(0).normal(size=(120, 5))
    for method in ("pca", "tsne", "umap"):
        coordinates, info = project(values, method, key="test", folder=tmp_path, seed=0)
        assert coordinates.shape == (120, 2) and np.all(np.isfinite(coordinates))
    again, _ = project(values, "pca", key="test", folder=tmp_path, seed=0)
    np.testing.assert_array_equal(again, project(values, "pca", key="test", folder=tmp_path, use_cache=False)[0])
    with pytest.raises(ValueError):
        project(values, "lle")


def test_representation_scores_on_inputs(toy_dataset):
    train = toy_dataset.labels["fingerprint"] < 8
    scores = representation_scores(toy_dataset.spectra[train], toy_dataset.labels[train],
                                   toy_dataset.spectra[~train], toy_dataset.labels[~train])
    assert scores["r2"]["teff"] > 0.9 and scores["r2_knn"]["logg"] > 0.9
