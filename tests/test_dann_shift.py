"""Detection limits on the models and the label-free class-balance estimate (methods/dann/shift.py)."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from astrocore.data.simulators.nebulae import LINE_NAMES, line_ratios
from astrocore.data.simulators.nebulae_observe import FEATURES, OBSERVED_FRACTIONS, features_from_fluxes, simulate_nebulae
from astrocore.methods.dann.config import DannConfig
from astrocore.methods.dann.fit import fit
from astrocore.methods.dann.shift import bbse_prior, censor, detection_limits, em_prior, line_levels


@pytest.fixture(scope="module")
def nebulae():
    return simulate_nebulae(1500, 1500, seed=5)


def _shifted_blobs(prior, n, rng):
    """Three overlapping Gaussian classes in 2-D with class balance ``prior``."""
    y = rng.choice(3, n, p=prior)
    centres = np.array([[0.0, 0.0], [1.5, 1.0], [-1.0, 1.5]])
    return centres[y] + rng.normal(0, 0.8, (n, 2)), y


def test_prior_estimates_recover_a_known_label_shift():
    rng = np.random.default_rng(0)
    xs, ys = _shifted_blobs([1 / 3] * 3, 6000, rng)  # balanced source, as the models
    xv, yv = _shifted_blobs([1 / 3] * 3, 3000, rng)  # held-out source
    xt, yt = _shifted_blobs(OBSERVED_FRACTIONS, 20000, rng)  # mostly class 0, as a catalogue
    model = LogisticRegression().fit(xs, ys)
    truth = np.bincount(yt, minlength=3) / len(yt)
    naive = np.bincount(model.predict(xt), minlength=3) / len(yt)
    assert np.abs(naive - truth).max() > 0.05  # predicted shares alone are biased
    bbse = bbse_prior(model.predict(xt), model.predict(xv), yv)
    np.testing.assert_allclose(bbse, truth, atol=0.02)
    em = em_prior(model.predict_proba(xt), [1 / 3] * 3)  # calibrated here, so EM works too
    np.testing.assert_allclose(em, truth, atol=0.02)
    assert bbse.sum() == pytest.approx(1) and bbse.min() > 0


def test_bbse_floors_and_normalises():
    # a target predicted all class 0 by a perfect classifier: (1, 0, 0) floored, still a distribution
    prior = bbse_prior(np.zeros(100, int), np.arange(3).repeat(10), np.arange(3).repeat(10))
    assert prior.argmax() == 0 and prior.min() > 0 and prior.sum() == pytest.approx(1)


def test_censoring_reproduces_the_catalogue_ratios(nebulae):
    labels = nebulae.labels
    target = np.flatnonzero(np.asarray(labels["domain"]) == "target")
    # the catalogue's measured fluxes at their own limits give back its ratios exactly
    ratios = censor(line_levels(labels, target), detection_limits(labels, target), FEATURES)
    expected = np.column_stack([np.asarray(labels[f], float)[target] for f in FEATURES])
    ok = np.isfinite(expected).all(1) & np.asarray(labels["HA6562_DETECTED"])[target]
    assert ok.mean() > 0.95
    np.testing.assert_allclose(ratios[ok], expected[ok], atol=2e-4)
    # and the same as features_from_fluxes on those fluxes
    fluxes = {line: np.asarray(labels[f"{line}_FLUX"], float)[target] for line in LINE_NAMES}
    errors = {line: np.asarray(labels[f"{line}_FLUX_ERR"], float)[target] for line in LINE_NAMES}
    again, _ = features_from_fluxes(fluxes, errors)
    np.testing.assert_allclose(ratios[ok, 0], again["log_oiii_hb"][ok], atol=2e-4)


def test_censoring_only_raises_faint_lines(nebulae):
    labels = nebulae.labels
    source = np.flatnonzero(np.asarray(labels["domain"]) == "source")[:300]
    levels = line_levels(labels, source)
    none = np.full_like(levels, -np.inf)
    exact = line_ratios({line: 10.0 ** levels[:, k] for k, line in enumerate(LINE_NAMES)})
    np.testing.assert_allclose(censor(levels, none, FEATURES),
                               np.column_stack([exact[f] for f in FEATURES]), atol=1e-5)
    limits = np.full_like(levels, -1.0)  # every line fainter than Halpha / 10 is at its limit
    censored = censor(levels, limits, ("log_nii_ha", "log_oi_ha"))
    assert (censored >= -1.0 - 1e-6).all()
    bright = levels[:, LINE_NAMES.index("NII6583")] > -1.0
    np.testing.assert_allclose(censored[bright, 0], levels[bright, LINE_NAMES.index("NII6583")], atol=1e-5)


def test_missing_errors_mean_no_censoring(nebulae):
    labels = nebulae.labels.copy()
    labels["OI6300_FLUX_ERR"] = 0.0
    rows = np.flatnonzero(np.asarray(labels["domain"]) == "target")[:50]
    assert np.isneginf(detection_limits(labels, rows)[:, LINE_NAMES.index("OI6300")]).all()


def test_fit_at_detection_limits_estimates_the_target_balance(nebulae, tmp_path):
    config = DannConfig.preset("fast", epochs=6, validator_objects=100, noise_sigma=0.1)
    assert config.detection_limits == "target" and config.class_weighting == "estimated"
    run = fit(nebulae, config, runs_root=tmp_path, run_id="limits")
    metrics = run.record.metrics
    estimate = metrics["target_prior_estimate"]
    assert estimate["HII"] > 0.7 and estimate["PN"] < 0.15 and estimate["SNR"] < 0.25  # truth 0.86 / 0.05 / 0.09
    assert all("target_prior" in row for row in run.record.history["checkpoints"])
    assert metrics["target"]["accuracy"] > 0.8
    # the models as they are stay available, and old runs (no field) load as such
    assert DannConfig.from_json({k: v for k, v in config.to_json().items()
                                 if k != "detection_limits"}).detection_limits == "none"
