"""DANN for nebulae: the physics of the simulator, the catalogue reader, the gradient reversal,
the rule baseline, fit / save / load and the CLI. Small data, one or two epochs."""
import numpy as np
import pytest
import torch
from astropy.table import Table

from astrocore.data.dataset import DataError
from astrocore.data.readers.catalogues import map_columns, read_nebula_catalogue
from astrocore.data.simulators.nebulae import (CLASSES, NII_DOUBLET_RATIO, OIII_DOUBLET_RATIO, draw_class,
                                               emissivity_line_fluxes, hii_line_fluxes)
from astrocore.data.simulators.nebulae_observe import FEATURES, simulate_nebulae
from astrocore.methods.dann.baselines import kauffmann03, kewley01_nii, rule_classify
from astrocore.methods.dann.config import DannConfig
from astrocore.methods.dann.model import GradientReversal, lambda_at, reverse_gradient


@pytest.fixture(scope="module")
def small():
    return simulate_nebulae(600, 600, seed=3)


# ---------------------------------------------------------------------------- physics
def test_fixed_atomic_ratios_in_every_class():
    rng = np.random.default_rng(0)
    for name in CLASSES:
        fluxes, _ = draw_class(name, rng, 200)
        np.testing.assert_allclose(fluxes["OIII5006"] / fluxes["OIII4958"], 2.98, rtol=0.01)
        np.testing.assert_allclose(fluxes["NII6583"] / fluxes["NII6548"], 2.94, rtol=0.01)
        balmer = fluxes["HA6562"] / fluxes["HB4861"]
        assert np.all((balmer > 2.7) & (balmer < 3.3)), (name, balmer.min(), balmer.max())
    assert OIII_DOUBLET_RATIO == 2.98 and NII_DOUBLET_RATIO == 2.94


def test_case_b_balmer_decrement_falls_with_temperature():
    te = np.array([5000.0, 1e4, 2e4])
    ones = {ion: np.ones(3) for ion in ("O3", "N2", "S2", "S3", "O1", "N1")}
    balmer = emissivity_line_fluxes(te, np.full(3, 100.0), ones)["HA6562"]
    np.testing.assert_allclose(balmer, [3.04, 2.86, 2.75], atol=0.04)


@pytest.mark.parametrize("ne, expected", [(10, 1.45), (100, 1.35), (1000, 0.91), (1e4, 0.52)])
def test_sii_doublet_measures_density(ne, expected):
    ones = {ion: np.ones(1) for ion in ("O3", "N2", "S2", "S3", "O1", "N1")}
    fluxes = emissivity_line_fluxes(1e4, ne, ones)
    assert fluxes["SII6716"][0] / fluxes["SII6730"][0] == pytest.approx(expected, abs=0.07)


def test_hii_grid_interpolation_hits_grid_nodes():
    fluxes = hii_line_fluxes([-3.0], [6.2], [8.76])
    assert 2.8 < fluxes["HA6562"][0] < 3.1
    assert fluxes["HB4861"][0] == pytest.approx(1.0)


def test_class_ratio_ranges_follow_physics_notes(small):
    labels = small.labels[small.labels["domain"] == "source"]
    median = {name: {k: np.median(labels[k][labels["class"] == name]) for k in FEATURES} for name in CLASSES}
    assert -1.0 < median["HII"]["log_oiii_hb"] < 0.3 and median["PN"]["log_oiii_hb"] > 0.5
    assert median["SNR"]["log_sii_ha"] > np.log10(0.4) > median["HII"]["log_sii_ha"]
    assert median["SNR"]["log_oi_ha"] > median["HII"]["log_oi_ha"] + 0.8
    assert median["PN"]["log_sii_ratio"] < median["HII"]["log_sii_ratio"]  # dense PN


def test_extinction_raises_balmer_decrement_only():
    knobs = dict(dig=0, noise=0, calibration=0, gradient=0, balance=0)
    clear = simulate_nebulae(300, 300, seed=1, dust=0, **knobs).labels
    dusty = simulate_nebulae(300, 300, seed=1, dust=1, **knobs).labels
    target = dusty["domain"] == "target"
    assert np.median(dusty["log_ha_hb"][target]) > np.median(clear["log_ha_hb"][target]) + 0.1
    # lines close in wavelength barely change
    assert np.abs(dusty["log_nii_ha"][target] - clear["log_nii_ha"][target]).max() < 0.01
    assert np.all(dusty["a_v"][target] >= 0)


def test_gap_zero_makes_target_like_source():
    labels = simulate_nebulae(900, 900, seed=2, gap=0.0).labels
    source, target = labels["domain"] == "source", labels["domain"] == "target"
    for feature in FEATURES:
        assert abs(np.median(labels[feature][source]) - np.median(labels[feature][target])) < 0.08
    assert np.all(labels["HA6562_FLUX_ERR"][target] == 0)


def test_default_gap_is_physical(small):
    labels = small.labels
    target = labels["domain"] == "target"
    hii = target & (labels["class"] == "HII")
    assert np.mean(labels["class"][target] == "HII") > 0.8  # observed class balance
    assert np.median(labels["dig_fraction"][hii]) > 0.05
    assert np.median(labels["log_sii_ha"][hii]) > np.median(labels["log_sii_ha"][(~target) & (labels["class"] == "HII")])
    assert 0 < np.mean(labels["OI6300_DETECTED"][target]) < 1  # faint lines drop below 3 sigma


def test_simulator_is_pure():
    a = simulate_nebulae(50, 50, seed=5).labels
    b = simulate_nebulae(50, 50, seed=5).labels
    np.testing.assert_array_equal(a["HA6562_FLUX"], b["HA6562_FLUX"])
    with pytest.raises(ValueError):
        simulate_nebulae(50, 50, gap=-1)


# ---------------------------------------------------------------------------- model
def test_gradient_reversal_flips_the_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    (reverse_gradient(x, 0.7) * torch.arange(3.0)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), -0.7 * np.tile(np.arange(3.0), (4, 1)), rtol=1e-6)
    y = torch.randn(2, requires_grad=True)
    assert torch.equal(GradientReversal.apply(y, 1.0), y)


def test_lambda_schedule():
    config = DannConfig(lambda_max=1.0)
    assert lambda_at(0.0, config) == 0.0
    assert lambda_at(1.0, config) == pytest.approx(1.0, abs=1e-4)
    assert lambda_at(0.5, DannConfig(lambda_schedule="constant", lambda_max=0.3)) == 0.3
    with pytest.raises(ValueError, match="mode"):
        DannConfig(mode="nope")


def test_rule_baseline_and_bpt_curves():
    assert kauffmann03(-0.5) == pytest.approx(0.61 / (-0.55) + 1.30)
    assert np.isnan(kewley01_nii(0.6))
    ratios = {"log_oiii_hb": np.array([-0.5, 1.0, 0.2]), "log_nii_ha": np.array([-0.6, -0.2, -0.1]),
              "log_sii_ha": np.array([-0.8, -1.2, 0.0])}
    assert rule_classify(ratios).tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------- reader
def phangs_table(dataset, n=40):
    labels = dataset.labels[dataset.labels["domain"] == "target"][:n]
    table = Table()
    table["region_ID"] = np.arange(n)
    for line in ("HB4861", "OIII5006", "HA6562", "NII6583", "SII6716", "SII6730", "OI6300"):
        table[f"{line}_FLUX"] = np.asarray(labels[f"{line}_FLUX"], float)
        table[f"{line}_FLUX_ERR"] = np.asarray(labels[f"{line}_FLUX_ERR"], float)
    return table, labels


def test_reads_phangs_fits_catalogue(small, tmp_path):
    table, labels = phangs_table(small)
    table["HA6562_FLUX"][3] = np.nan
    table["OI6300_FLUX_ERR"][5] = 1e9  # [OI] undetected: enters at its limit
    path = tmp_path / "nebulae.fits"
    table.write(path, format="fits")
    read = read_nebula_catalogue(path).labels
    assert len(read) == 40 and "reason" in read.colnames
    assert not read["usable"][3] and "HA6562" in read["reason"][3]
    assert "OI6300" in read["upper_limits"][5]
    good = np.asarray(read["usable"]) & (np.arange(40) != 5)
    np.testing.assert_allclose(read["log_nii_ha"][good], labels["log_nii_ha"][good], atol=1e-5)


def test_reads_csv_with_other_names(tmp_path):
    path = tmp_path / "cat.csv"
    path.write_text("name,Hbeta,e_Hbeta,OIII_5007,Halpha,NII6584_err,NII6584,SII6717,SII6731,OI6300\n"
                    "a,100,5,300,286,3,100,40,30,5\nb,100,5,300,-4,3,100,40,30,5\n")
    read = read_nebula_catalogue(path).labels
    assert read["usable"].tolist() == [True, False]
    assert read["log_oiii_hb"][0] == pytest.approx(np.log10(3.0))
    assert map_columns(["HA6562_FLUX", "HA6562_FLUX_ERR"]) == {"HA6562_FLUX": "HA6562_FLUX",
                                                               "HA6562_FLUX_ERR": "HA6562_FLUX_ERR"}


def test_reader_refuses_bad_uploads(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_nebula_catalogue(b"", name="x.csv")
    with pytest.raises(DataError, match="no line-flux columns"):
        read_nebula_catalogue(b"a,b\n1,2\n", name="x.csv")
    with pytest.raises(DataError, match="limit"):
        read_nebula_catalogue(b"HA6562_FLUX\n1\n", name="x.csv", max_bytes=5)


# ---------------------------------------------------------------------------- fit, save / load, CLI
def test_cli_make_train_classify_and_reload(tmp_path):
    from pathlib import Path

    from astrocore.cli import main
    from astrocore.methods import registry
    from astrocore.methods.dann.run import DannRun

    assert main(["data", "make", "nebulae", "--n-source", "300", "--n-target", "300", "--out",
                 str(tmp_path / "neb.fits")]) == 0
    assert main(["train", "dann", "--data", str(tmp_path / "neb.fits"), "--epochs", "2", "--noise-sigma", "0.1",
                 "--selection", "snd", "--set", "validator_objects=60", "--out", str(tmp_path / "runs"),
                 "--run-id", "tiny"]) == 0
    run = registry.load_run(tmp_path / "runs" / "tiny")
    assert isinstance(run, DannRun) and run.record.status == "done"
    metrics = run.record.metrics
    assert 0 <= metrics["target"]["accuracy"] <= 1 and set(metrics["target"]["recall"]) == set(CLASSES)
    assert set(metrics["validators"]) >= {"im", "snd", "dev", "entropy", "domain_accuracy", "target_accuracy"}
    # save / load gives the same predictions; the explorer gets source and target features
    again = DannRun.load(run.path)
    ratios = np.asarray([[-0.3, -0.5, -0.7, -1.9, 0.15]], np.float32)
    np.testing.assert_allclose(run.predict_proba(ratios), again.predict_proba(ratios), rtol=1e-6)
    features = again.representation("features")
    assert features.shape == (600, run.config.feature_dim)
    assert set(np.asarray(again.dataset().labels["domain"])) == {"source", "target"}
    example = Path(__file__).resolve().parents[1] / "assets" / "example_nebulae_catalogue.csv"
    assert main(["classify", "nebulae", str(example), "--run", str(run.path), "--out", str(tmp_path / "out.csv")]) == 0
    classified = Table.read(tmp_path / "out.csv", format="ascii.csv")
    assert "predicted_class" in classified.colnames and (np.asarray(classified["usable"]).astype(str) == "False").sum() >= 2
    assert registry.get("dann").evaluate(run)["target_accuracy"] == pytest.approx(metrics["target"]["accuracy"])


def test_cancel_then_resume_gives_the_uninterrupted_run(small, tmp_path):
    """A run cancelled inside its third epoch and resumed trains as the uninterrupted run (the
    gradient-reversal schedule, the noise and detection-limit draws, the estimated target prior)
    and still picks its epoch among all of them, those before the interruption included."""
    from conftest import cancelled_then_resumed

    from astrocore.methods.dann.fit import EPOCHS_FILE, fit

    config = DannConfig.preset("fast", epochs=4, batch_size=64, noise_sigma=0.1, selection="snd",
                               validator_objects=60)
    steps_per_epoch = 9  # 540 source training rows in batches of 64
    whole, resumed = cancelled_then_resumed(fit, small, config, tmp_path, stop_after=2 * steps_per_epoch + 3)
    assert [row["epoch"] for row in resumed.record.history["checkpoints"]] == [0, 1, 2, 3]
    assert resumed.record.history["checkpoints"] == whole.record.history["checkpoints"]
    assert resumed.record.metrics["selected_epoch"] == whole.record.metrics["selected_epoch"]
    ratios = np.asarray([[-0.3, -0.5, -0.7, -1.9, 0.15], [0.2, 0.1, -0.2, -0.8, 0.4]], np.float32)
    np.testing.assert_allclose(resumed.predict_proba(ratios), whole.predict_proba(ratios), atol=1e-6)
    assert not (tmp_path / "cut" / EPOCHS_FILE).exists()  # removed once the run is done
