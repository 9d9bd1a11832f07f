"""The SSL method: network shapes, pretext and downstream fits, save / load, readers, classify."""
import io
import json

import numpy as np
import pytest
import torch
from astropy.io import fits

from astrocore.data.dataset import DataError
from astrocore.data.readers.images import fit_to_size, read_band_files, read_image_file
from astrocore.data.simulators.cutouts import label_set, simulate_cutouts
from astrocore.methods import registry
from astrocore.methods.ssl import SPEC
from astrocore.methods.ssl.classify import classify_files
from astrocore.methods.ssl.config import SSLConfig
from astrocore.methods.ssl.fit import downstream_split, fit
from astrocore.methods.ssl.imagenet import imagenet_status
from astrocore.methods.ssl.model import CutoutNet, augment, blur, dihedral_views, nt_xent
from astrocore.methods.ssl.run import SSLRun

TINY = dict(epochs=1, head_epochs=1, min_steps=2, batch_size=32, width=4, head_hidden=8, val_objects=10)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A pretext run and a frozen-pretext downstream run on tiny simulated sets."""
    root = tmp_path_factory.mktemp("ssl-runs")
    unlabelled = simulate_cutouts(70, seed=11, r_range=(13.0, 15.5), use_cache=False, n_workers=1)
    source = {"kind": "simulator", "generator": "cutouts",
              "params": {"n_objects": 70, "seed": 11, "r_range": [13.0, 15.5], "use_cache": False, "n_workers": 1}}
    pretext = fit(unlabelled, SSLConfig.preset("fast", **TINY), runs_root=root, data_source=source)
    labelled = label_set("star_galaxy_quasar", 60, seed=12, use_cache=False, n_workers=1)
    downstream = fit(labelled, SSLConfig.preset("fast", stage="downstream", scheme="frozen_pretext", **TINY),
                     runs_root=root, pretext_run=pretext)
    return {"root": root, "pretext": pretext, "downstream": downstream, "labelled": labelled}


@pytest.mark.parametrize("backbone", ["small_vgg", "resnet10t"])
def test_network_shapes(backbone):
    config = SSLConfig.preset("fast", backbone=backbone, width=4)
    net = CutoutNet(12, config, n_classes=3).eval()
    images = torch.rand(5, 12, 32, 32)
    features = net.features(images)
    assert features.shape == (5, net.n_features)
    magnitudes = net.magnitudes_scaled(features)
    # Kron, 0.8" and 2" magnitudes per band, saturating
    assert magnitudes.shape == (5, 36) and torch.all((magnitudes > 0) & (magnitudes < 1))
    assert net.logits(features).shape == (5, 3)
    assert torch.allclose(net.project(features).norm(dim=1), torch.ones(5), atol=1e-5)


def test_augmentations_keep_flux_and_shape():
    images = torch.rand(6, 3, 32, 32)
    assert torch.allclose(blur(images, 1.0).sum(dim=(2, 3)), images.sum(dim=(2, 3)), rtol=0.05)
    config = SSLConfig.preset("fast", augment_noise=0.0, augment_blur=0.0)
    view = augment(images, torch.ones(3), config, torch.Generator().manual_seed(0))
    assert view.shape == images.shape
    assert torch.allclose(view.sum(dim=(2, 3)), images.sum(dim=(2, 3)), rtol=1e-4)  # rotations, flips, rolls
    same = torch.nn.functional.normalize(torch.rand(8, 4), dim=1)
    assert nt_xent(same, same, 0.1) < nt_xent(same, same.roll(1, 0), 0.1)


def test_config_validation():
    with pytest.raises(ValueError, match="scheme must be one of"):
        SSLConfig(scheme="magic")
    with pytest.raises(ValueError, match="n_labels"):
        SSLConfig(n_labels=1)
    with pytest.raises(ValueError, match="head_views"):
        SSLConfig(head_views=0)
    with pytest.raises(ValueError, match="magnitude_dropout"):
        SSLConfig(magnitude_dropout=1.0)
    with pytest.raises(ValueError, match="head_weight_decay"):
        SSLConfig(head_weight_decay=-1.0)
    with pytest.raises(ValueError, match="fixed_apertures_arcsec"):
        SSLConfig(fixed_apertures_arcsec=(1.0, 0.0))
    config = SSLConfig.preset("paper")
    assert config.backbone == "vgg16_bn" and SSLConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    apertures = SSLConfig.preset("fast", fixed_apertures_arcsec=[0.8, 2])  # lists (JSON, --set) become tuples
    assert apertures.fixed_apertures_arcsec == (0.8, 2.0) and apertures.n_magnitude_sets == 3
    assert SSLConfig.from_json(json.loads(json.dumps(apertures.to_json()))) == apertures
    assert config.n_magnitude_sets == 1  # the paper's pretext: one magnitude per band


def test_downstream_split_is_fixed_across_seeds():
    target = np.repeat([0, 1, 2], 200)
    first = downstream_split(target, 100, 50, 0.2, seed=0)
    second = downstream_split(target, 100, 50, 0.2, seed=1)
    assert np.array_equal(first == 2, second == 2) and np.array_equal(first == 1, second == 1)
    assert (first == 0).sum() == 100 and not np.array_equal(first == 0, second == 0)
    rare = np.r_[np.zeros(590, int), np.ones(10, int)]
    assert set(rare[downstream_split(rare, 5, 50, 0.2, 0) == 0]) == {0, 1}  # every class at least once


def test_pretext_run_saves_and_loads(runs):
    run = runs["pretext"]
    assert run.record.status == "done" and registry.get("ssl") is SPEC
    loaded = registry.load_run(run.path)
    assert isinstance(loaded, SSLRun) and loaded.bands == run.bands
    arrays = loaded.arrays()
    assert set(np.unique(arrays["split"])) <= {0, 1, 2} and set(np.unique(arrays["role"])) <= {0, 1, 2, 3}
    assert np.array_equal(arrays["split"] == 0, arrays["role"] == 0)
    images = loaded.dataset().images[:4]
    assert np.allclose(loaded.features(images), run.features(images), atol=1e-5)
    magnitudes = loaded.predict_magnitudes(images)
    assert magnitudes.shape == (4, 12) and np.all((magnitudes > 0) & (magnitudes < 30))
    assert set(run.record.metrics["pretext_mae_per_band"]) == set(run.bands)
    assert loaded.representation("features").shape[0] == len(arrays["ids"])
    assert "pretext_mae_per_band" in SPEC.evaluate(loaded)


def test_downstream_run_predicts_classes_and_magnitudes(runs):
    run = SSLRun.load(runs["downstream"].path)
    images = runs["labelled"].images[:5]
    proba = run.predict_proba(images)
    assert proba.shape == (5, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert run.predict_magnitudes(images).shape == (5, 12)
    indices, distances = run.neighbours(run.features(images[:1]), k=3)
    assert indices[0, 0] == 0 and distances[0, 0] < 1e-3  # the cutout itself is its nearest neighbour
    assert 0 <= run.record.metrics["accuracy"] <= 1


def test_fixed_aperture_pretext_and_a_classifier_that_starts_from_it(runs, tmp_path):
    """A pretext run with fixed-aperture targets regresses 3 magnitudes per band, predicts the Kron
    ones, and starts a classifier whose network takes its shape from it."""
    labelled = runs["labelled"]
    config = SSLConfig.preset("fast", stage="pretext", fixed_apertures_arcsec=(0.8, 2.0), **TINY)
    pretext = fit(runs["pretext"].dataset(), config, runs_root=tmp_path)
    assert pretext.net.magnitude_head[-1].out_features == 36  # Kron, 0.8" and 2" per band
    downstream = fit(labelled, SSLConfig.preset("fast", stage="downstream", scheme="finetune_pretext", **TINY),
                     runs_root=tmp_path, pretext_run=pretext)
    loaded = SSLRun.load(downstream.path)
    assert loaded.net.config.fixed_apertures_arcsec == (0.8, 2.0)
    assert loaded.predict_magnitudes(labelled.images[:3]).shape == (3, 12)
    paper = SSLConfig.preset("paper", stage="pretext")
    assert paper.n_magnitude_sets == 1 and SSLConfig.preset("fast").n_magnitude_sets == 3  # paper: Kron only


def test_every_stage_takes_its_minimum_of_optimiser_steps(runs, tmp_path):
    """However few the cutouts or epochs, a pretext run with the magnitude target takes
    ``steps_at_least`` optimiser steps (1200 by default: its features need them), a downstream
    run 200."""
    assert SSLConfig.preset("fast", stage="pretext").steps_at_least == 1200
    assert SSLConfig.preset("fast", stage="downstream").steps_at_least == 200
    assert SSLConfig.preset("fast", stage="pretext", pretext="contrastive").steps_at_least == 0
    assert SSLConfig.preset("fast", stage="pretext", min_steps=7).steps_at_least == 7
    config = SSLConfig.preset("fast", stage="pretext", **{**TINY, "min_steps": 9, "patience": None})
    pretext = fit(runs["pretext"].dataset(), config, runs_root=tmp_path)
    n_train = int(np.sum(pretext.arrays()["role"] == 0))
    steps_per_epoch = -(-n_train // config.batch_size)
    epochs_run = len(pretext.record.history["epochs"])
    assert epochs_run > config.epochs
    assert epochs_run * steps_per_epoch >= 9 > (epochs_run - 1) * steps_per_epoch


def test_wrong_bands_and_small_cutouts_are_refused(runs):
    run = runs["downstream"]
    with pytest.raises(DataError, match="expects 12 bands"):
        run.predict_proba(np.zeros((1, 3, 32, 32)))
    with pytest.raises(DataError, match="at least 32 x 32"):
        run.predict_proba(np.zeros((1, 12, 20, 20)))
    assert run.check_images(np.zeros((12, 40, 40))).shape == (1, 12, 32, 32)


def test_classify_files_mef_png_and_broken(runs, tmp_path):
    run = runs["downstream"]
    image = runs["labelled"].images[3]
    mef = tmp_path / "object.fits"
    hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(plane, name=band) for plane, band in zip(image, run.bands)]
    fits.HDUList(hdus).writeto(mef)
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(png, format="PNG")
    files = [str(mef), ("picture.png", png.getvalue()), ("broken.fits", b"SIMPLE  = this is not FITS")]
    table, errors = classify_files(run, files)
    assert list(table["name"]) == [str(mef)]
    assert table["predicted_class"][0] in run.classes and "mag_r" in table.colnames
    assert len(errors) == 2 and "expects 12 bands" in errors[0] and "broken.fits" in errors[1]
    proba = run.predict_proba(image[None])
    assert np.allclose([table[f"p_{c}"][0] for c in run.classes], proba[0], atol=1e-3)


def test_readers_on_real_hst_stamps(shared_data):
    folder = shared_data / "galsim"
    data = read_band_files([folder / "AEGIS_F606w_images_01.fits", folder / "AEGIS_F814w_images_01.fits"], hdu=1)
    assert data.images.shape[:2] == (1, 2) and np.isfinite(data.images).all()
    # A galaxy: the centre is brighter than the border in both bands.
    centre = data.images[0, :, 70:86, 63:79].mean(axis=(1, 2))
    assert np.all(centre > np.median(data.images[0], axis=(1, 2)))
    with pytest.raises(DataError, match="different shapes"):
        read_image_file(folder / "AEGIS_F606w_images_01.fits")
    single = read_image_file(folder / "AEGIS_F814w_images_01.fits", hdu=2)
    assert single.images.shape == (1, 1, 50, 48) and fit_to_size(single.images, 32).shape == (1, 1, 32, 32)


def test_readers_refuse_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="neither"):
        read_image_file(b"hello", name="notes.txt")
    with pytest.raises(DataError, match="8-1024 pixels"):
        read_image_file(_fits_bytes(np.zeros((3, 4, 4))), name="tiny.fits")
    cube = read_image_file(_fits_bytes(np.ones((5, 16, 16))), name="cube.fits")
    assert cube.images.shape == (1, 5, 16, 16)
    with pytest.raises(DataError, match="different sizes"):
        read_band_files([("a.fits", _fits_bytes(np.ones((16, 16)))), ("b.fits", _fits_bytes(np.ones((20, 20))))])


def test_imagenet_scheme_says_when_weights_are_absent(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert "not on this disk" in imagenet_status()


def _fits_bytes(array) -> bytes:
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.asarray(array, np.float32)).writeto(buffer)
    return buffer.getvalue()


def test_cli_classify_image(runs, capsys, tmp_path):
    from pathlib import Path

    from astrocore.cli import main

    example = Path(__file__).resolve().parents[1] / "assets" / "example_cutout.fits"
    out = tmp_path / "classified.csv"
    assert main(["classify", "image", str(example), "--run", str(runs["downstream"].path), "--json",
                 "--out", str(out)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["predicted_class"] in ("star", "galaxy", "quasar") and out.exists()
    with pytest.raises(SystemExit, match="no run at"):
        main(["classify", "image", str(example), "--run", str(tmp_path / "missing")])


@pytest.mark.parametrize("objective", ["contrastive", "both"])
def test_contrastive_and_combined_pretext_steps(objective):
    from astrocore.methods.ssl.tasks import PretextTask

    config = SSLConfig.preset("fast", width=4, head_hidden=8, pretext=objective)
    net = CutoutNet(3, config)
    task = PretextTask(net, objective, torch.ones(3), 1e-3, 0.0)
    batch = {"images": torch.rand(8, 3, 32, 32) * 5, "targets": torch.full((8, 3 * config.n_magnitude_sets), 0.6)}
    before = [p.detach().clone() for p in net.backbone.parameters()]
    metrics = task.training_step(batch, 0)
    assert np.isfinite(metrics["loss"]) and "contrastive" in metrics
    assert ("magnitude_mse" in metrics) == (objective == "both")
    assert any(not torch.equal(a, b) for a, b in zip(before, net.backbone.parameters()))
    assert np.isfinite(task.validation_step(batch)["loss"])


def test_the_explorer_reads_an_ssl_run(runs):
    from astrocore.app.explore import load_explore_data

    data = load_explore_data(SSLRun.load(runs["downstream"].path))
    assert data.latent.shape == (60, runs["downstream"].net.n_features)
    assert data.images is not None and data.images.shape[1] == 12
    assert set(data.table["split"]) <= {"train", "validation", "held out"} and "morphology" in data.table


def test_cancel_then_resume_gives_the_uninterrupted_run(tmp_path):
    from conftest import cancelled_then_resumed

    cutouts = simulate_cutouts(70, seed=11, r_range=(13.0, 15.5), use_cache=False, n_workers=1)
    config = SSLConfig.preset("fast", **{**TINY, "epochs": 3})
    whole, resumed = cancelled_then_resumed(fit, cutouts, config, tmp_path, stop_after=3)
    np.testing.assert_allclose(resumed.features(cutouts.images[:6]), whole.features(cutouts.images[:6]), atol=1e-5)


def test_bench_runs_every_scheme_and_its_record_matches_the_runs(tmp_path):
    """The bench trains the three pretext networks once and every scheme at every label count; the
    record rebuilt from the run folders (a bench stopped early) gives the same accuracies."""
    from astrocore.methods.ssl.bench import BENCH_SCHEMES, bench_ssl, summarise_runs

    lines = []
    record = bench_ssl(sets=("star_galaxy",), label_counts=(12, 0), seeds=1, n_pretext=90, n_labelled=80,
                       runs_root=tmp_path, progress=lines.append, overrides={**TINY, "max_error": 5.0}, workers=2)
    assert set(record["star_galaxy"]) == {"12", "all"}
    for count in ("12", "all"):
        entry = record["star_galaxy"][count]
        assert set(entry) == set(BENCH_SCHEMES) | {"best"}
        assert entry["best"] in BENCH_SCHEMES
        for scheme in BENCH_SCHEMES:
            assert 0 <= entry[scheme]["accuracy"]["mean"] <= 1 and entry[scheme]["accuracy"]["n"] == 1
    assert set(record["pretext_train_s"]) == {"magnitudes", "contrastive", "both"}
    assert set(record["both_mae_per_band"]) == set(record["pretext_mae_per_band"])
    assert record["pretext_r_range"] == [14.0, 19.5]
    assert any("frozen_both" in line for line in lines)
    progress = [line for line in lines if line.startswith("downstream ")]
    assert len(progress) == 2 * len(BENCH_SCHEMES) and progress[-1].startswith(f"downstream {len(progress)}/")
    assert 0 < record["all_labels"]["star_galaxy"] < 80  # the training pool, not the set's size
    assert record["predict_one_ms"] > 0 and record["upload_classify_ms"] > 0
    rebuilt = summarise_runs(tmp_path)
    for count in ("12", "all"):
        for scheme in BENCH_SCHEMES:
            assert rebuilt["star_galaxy"][count][scheme]["accuracy"] == record["star_galaxy"][count][scheme]["accuracy"]


def test_dihedral_views_are_the_eight_distinct_orientations():
    images = np.random.default_rng(0).normal(size=(3, 2, 8, 8)).astype(np.float32)
    views = dihedral_views(images)
    assert len(views) == 8 and np.array_equal(views[0], images)
    flat = {view.tobytes() for view in views}
    assert len(flat) == 8  # a random image has no symmetry: eight different arrays
    for view in views:  # orientation changes no pixel value, so no flux
        np.testing.assert_allclose(view.sum(axis=(2, 3)), images.sum(axis=(2, 3)), rtol=1e-5)
    assert len(dihedral_views(images, 1)) == 1
    with pytest.raises(ValueError):
        dihedral_views(images, 9)


def test_classifier_heads_keep_the_epoch_of_best_validation_accuracy():
    """Selection on accuracy, not loss: an overconfident net's loss rises while its accuracy climbs."""
    from astrocore.methods.ssl.tasks import ClassifierTask, HeadTask

    config = SSLConfig.preset("fast", stage="downstream", width=4, head_hidden=8)
    net = CutoutNet(3, config, n_classes=2, size=16)
    assert ClassifierTask(net, 1e-3, 0.0).monitor == "val_error"
    assert HeadTask(net.classifier, 1e-3, 0.0).monitor == "val_error"
    assert HeadTask(net.magnitude_head, 1e-3, 0.0, kind="magnitudes").monitor == "val_loss"
    batch = {"features": torch.randn(6, net.n_features), "target": torch.tensor([0, 1, 0, 1, 0, 1])}
    with torch.no_grad():
        metrics = HeadTask(net.classifier, 1e-3, 0.0).validation_step(batch)
    assert metrics["error"] == pytest.approx(1 - metrics["accuracy"])
