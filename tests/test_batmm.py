"""BATMM: the BHB simulator's physics, the readers, the networks, fit / save / load and the CLI."""
import io
import json

import numpy as np
import pytest
import torch
from astropy.io import fits

from astrocore.data.dataset import DataError
from astrocore.data.readers.cutouts import read_cutout, read_cutouts, write_cutout
from astrocore.data.readers.sdss import grid_wavelength, read_sdss_spectrum, write_spec_lite
from astrocore.data.simulators import bhb_sed
from astrocore.data.simulators.bhb import simulate_bhb, spectrum_wavelength
from astrocore.methods.batmm.baselines import h_delta_features
from astrocore.methods.batmm.config import BatmmConfig
from astrocore.methods.batmm.model import ImageEncoder, SpectrumEncoder, build_fusion, encoder_tokens


@pytest.fixture(scope="module")
def small():
    return simulate_bhb(120, seed=5, use_cache=False)


def _sed(teff, logg, feh=-1.5, vsini=30.0):
    one = lambda v: np.array([float(v)])  # noqa: E731
    return bhb_sed.stellar_sed(one(teff), one(logg), one(feh), one(vsini))[0]


# ---------------------------------------------------------------- simulator physics
def test_balmer_wings_broaden_with_gravity():
    wavelength = spectrum_wavelength()
    part = bhb_sed.spectrum_slice()
    widths = [h_delta_features(_sed(8500, g)[part][None], wavelength)[0][0] for g in (3.0, 3.5, 4.0, 4.4)]
    assert np.all(np.diff(widths) > 0), widths
    # BHB stars: H-delta D0.2 about 17-28.5 A (Xue et al. 2008); dwarfs above that.
    bhb_width = h_delta_features(_sed(8000, 3.2)[part][None], wavelength)[0][0]
    assert 17 < bhb_width < 28.5 and widths[-1] > 28.5


def test_balmer_jump_and_u_minus_g_grow_as_gravity_falls():
    import astropy.units as u
    import speclite.filters

    wavelength = bhb_sed.sed_wavelength()
    below, above = np.searchsorted(wavelength, [3550, 4000])
    filters = speclite.filters.load_filters("sdss2010-u", "sdss2010-g", "sdss2010-r")
    jumps, colours = [], []
    for logg in (3.0, 3.6, 4.3):
        sed = _sed(8500, logg)
        jumps.append(-2.5 * np.log10(sed[below] / sed[above]))
        mags = filters.get_ab_magnitudes(sed * u.erg / u.s / u.cm**2 / u.AA, wavelength * u.AA)
        colours.append(mags["sdss2010-u"][0] - mags["sdss2010-g"][0])
    assert jumps[0] > jumps[1] > jumps[2]
    assert colours[0] > colours[1] > colours[2]
    assert colours[0] - colours[2] > 0.2  # BHB ~1.1-1.35 vs BS ~0.85-1.15 at fixed g-r


def test_ca_k_scales_with_metallicity():
    wavelength = bhb_sed.sed_wavelength()
    k = np.argmin(np.abs(wavelength - 3933.66))
    side = np.searchsorted(wavelength, 3925.0)
    depth = [1 - _sed(8000, 3.2, feh)[k] / _sed(8000, 3.2, feh)[side] for feh in (-2.5, -1.5, -0.5)]
    assert depth[0] < depth[1] < depth[2]


def test_simulated_sample(small):
    labels = small.labels
    assert small.spectra.shape == (120, 3522) and small.images.shape == (120, 5, 32, 32)
    assert abs(small.wavelength[0] - 4000) < 0.5 and abs(small.wavelength[-1] - 9000) < 2
    assert np.allclose(np.diff(np.log10(small.wavelength)), 1e-4)
    bhb = np.asarray(labels["label"]) == 1
    assert 0.25 < bhb.mean() < 0.55
    assert np.all(labels["logg"][bhb] <= 3.8) and np.all(labels["logg"][~bhb] >= 3.8)
    # At fixed g-r (true colours), BHB stars have redder u-g than the high-gravity stars.
    u_g = np.asarray(labels["mag_true_u"] - labels["mag_true_g"])
    g_r = np.asarray(labels["mag_true_g"] - labels["mag_true_r"])
    slope, intercept = np.polyfit(g_r, u_g, 1)
    residual = u_g - (slope * g_r + intercept)
    assert residual[bhb].mean() > residual[~bhb].mean() + 0.1
    assert np.all(np.asarray(labels["g_r"]) > -0.45) and np.all(np.asarray(labels["g_r"]) < 0.3)
    # u is the noisiest band.
    errors = np.stack([labels[f"mag_err_{b}"] for b in "ugriz"], axis=1)
    assert np.all(np.argmax(np.median(errors, axis=0)) == 0)
    # Flux units 1e-17 erg/s/cm2/A: a g = 17 star has ~80 at 4700 A.
    bright = np.argmin(np.abs(np.asarray(labels["g_true"]) - 17))
    assert 20 < np.median(small.spectra[bright, 1500:1700]) < 300


def test_simulator_is_deterministic():
    a = simulate_bhb(12, seed=3, use_cache=False)
    b = simulate_bhb(12, seed=3, use_cache=False)
    c = simulate_bhb(12, seed=4, use_cache=False)
    assert np.array_equal(a.spectra, b.spectra) and np.array_equal(a.images, b.images)
    assert not np.array_equal(a.spectra, c.spectra)
    with pytest.raises(DataError):
        simulate_bhb(10, snr=-1)


# ---------------------------------------------------------------- readers
def test_spec_lite_round_trip_with_specutils(small, tmp_path):
    path = write_spec_lite(tmp_path / "spec-0000-00000-0001.fits", small.wavelength, small.spectra[0],
                           1 / small.errors[0] ** 2)
    result = read_sdss_spectrum(path)
    assert result["reader"] == "specutils"
    assert result["flux"].shape == (3522,) and np.allclose(result["wavelength"], grid_wavelength())
    assert np.max(np.abs(result["flux"] - small.spectra[0])) < 0.05 * np.abs(small.spectra[0]).max()


def test_spec_lite_without_sdss_header_and_shifted_grid(small, tmp_path):
    # A plain COADD table (no SDSS keywords) read by astropy; a half-pixel shift and a masked pixel.
    loglam = np.log10(small.wavelength) + 0.5e-4
    mask = np.zeros(3522, np.int32)
    mask[100] = 1
    table = fits.BinTableHDU.from_columns([
        fits.Column("loglam", "E", array=loglam), fits.Column("flux", "E", array=small.spectra[1]),
        fits.Column("ivar", "E", array=np.ones(3522)), fits.Column("and_mask", "J", array=mask)])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "plain.fits")
    result = read_sdss_spectrum(tmp_path / "plain.fits")
    assert result["reader"] == "astropy" and result["ivar"][100] < 1
    csv = "wavelength,flux\n" + "\n".join(f"{w},{f}" for w, f in zip(small.wavelength, small.spectra[1]))
    assert read_sdss_spectrum(csv.encode(), name="star.csv")["reader"] == "csv"


def test_spectrum_reader_errors(small, tmp_path):
    with pytest.raises(DataError, match="COADD"):
        fits.PrimaryHDU(np.zeros((4, 4))).writeto(tmp_path / "image.fits")
        read_sdss_spectrum(tmp_path / "image.fits")
    short = write_spec_lite(tmp_path / "short.fits", small.wavelength[:1000], small.spectra[0, :1000])
    with pytest.raises(DataError, match="4000-9000"):
        read_sdss_spectrum(short)
    with pytest.raises(DataError, match="expected an SDSS"):
        read_sdss_spectrum(b"hello", name="star.txt")


def test_cutout_readers(small, tmp_path):
    cube = small.images[0]
    write_cutout(tmp_path / "c.fits", cube[::-1], bands=("z", "i", "r", "g", "u"))
    array, bands = read_cutout(tmp_path / "c.fits", expected_bands=("u", "g", "r", "i", "z"))
    assert bands == ("u", "g", "r", "i", "z") and np.array_equal(array, cube)
    files = []
    for b, band in enumerate("ugriz"):
        hdu = fits.PrimaryHDU(cube[b])
        hdu.header["FILTER"] = band
        hdu.writeto(tmp_path / f"{band}.fits")
        files.append(tmp_path / f"{band}.fits")
    array, _ = read_cutouts(files, expected_bands=tuple("ugriz"))
    assert np.array_equal(array, cube)
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buffer, format="PNG")
    with pytest.raises(DataError, match="5 bands"):
        read_cutout(buffer.getvalue(), name="star.png", expected_bands=tuple("ugriz"))


# ---------------------------------------------------------------- networks
def test_network_shapes_and_missing_tokens():
    config = BatmmConfig.preset("fast")
    spectrum = SpectrumEncoder(config).eval()
    image = ImageEncoder(config).eval()
    s = spectrum(torch.rand(3, 3522))
    i = image(torch.rand(3, 5, 32, 32))
    assert s["tokens"].shape == (3, 7, 64) and s["weights"].shape == (3, 7)
    assert torch.allclose(s["weights"].sum(1), torch.ones(3)) and torch.allclose(i["weights"].sum(1), torch.ones(3))
    assert i["tokens"].shape == (3, 16, 64) and i["weights"].shape == (3, 5)
    fusion = build_fusion(config, 8, 17).eval()
    with torch.no_grad():
        full = fusion(encoder_tokens(s), encoder_tokens(i))
        no_image = fusion(encoder_tokens(s), encoder_tokens(i), torch.ones(3, dtype=torch.bool),
                          torch.zeros(3, dtype=torch.bool))
    assert full["cls"].shape == (3, 64) and len(full["cross_attention"]) == config.fusion_layers
    assert full["cross_attention"][0].shape == (3, 4, 17, 8)
    assert not torch.allclose(full["logit"], no_image["logit"])
    with pytest.raises(ValueError, match="divisible"):
        BatmmConfig(fusion_dim=30, fusion_heads=4)


def test_fit_save_load_and_cli(small, tmp_path):
    from astrocore.cli import main
    from astrocore.methods import registry
    from astrocore.methods.batmm import fit
    from astrocore.methods.batmm.run import BatmmRun

    config = BatmmConfig.preset("fast", encoder_epochs=1, fusion_epochs=1, batch_size=32)
    source = {"kind": "simulator", "generator": "bhb", "params": {"n_stars": 120, "seed": 5, "use_cache": False}}
    run = fit(small, config, runs_root=tmp_path, run_id="tiny", data_source=source)
    arrays = run.arrays()
    assert set(np.unique(arrays["split"])) == {0, 1, 2} and len(arrays["ids"]) == 120
    loaded = registry.load_run(tmp_path / "tiny")
    assert isinstance(loaded, BatmmRun)
    p1 = run.predict_proba(small.spectra[:5], small.images[:5])
    p2 = loaded.predict_proba(small.spectra[:5], small.images[:5])
    assert np.allclose(p1, p2, atol=1e-6)
    for name in ("cls", "spectrum", "image"):
        assert loaded.representation(name, small.subset(np.arange(4))).shape == (4, 64)
    assert len(loaded.dataset()) == 120
    with pytest.raises(DataError, match="3522"):
        loaded.predict_proba(np.zeros((1, 100)), None)
    spectrum = write_spec_lite(tmp_path / "s.fits", small.wavelength, small.spectra[0], 1 / small.errors[0] ** 2)
    cutout = write_cutout(tmp_path / "c.fits", small.images[0])
    out = tmp_path / "out.json"
    import contextlib

    with open(out, "w") as stream, contextlib.redirect_stdout(stream):
        assert main(["classify", "star", "--spectrum", str(spectrum), "--image", str(cutout), "--run",
                     str(tmp_path / "tiny"), "--json"]) == 0
    result = json.loads(out.read_text())
    assert 0 <= result["probability"] <= 1 and len(result["segment_weights"]) == 7
    assert set(result["band_weights"]) == set("ugriz")
    assert main(["classify", "star", "--spectrum", str(cutout), "--image", str(cutout), "--run",
                 str(tmp_path / "tiny")]) == 2


def test_cutout_augmentation_turns_stars_but_keeps_their_colours():
    from astrocore.methods.batmm.fit import augment_cutouts

    torch.manual_seed(0)
    images = torch.rand(64, 5, 16, 16)
    out = augment_cutouts(images)
    assert torch.allclose(out.sum(dim=(2, 3)), images.sum(dim=(2, 3)))  # fluxes (colours) unchanged
    for original, turned in zip(images, out):
        candidates = [t for x in (original, original.transpose(-1, -2)) for t in
                      (x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2))]
        assert any(torch.equal(turned, c) for c in candidates)  # one of the 8 flips / quarter turns
    assert not torch.equal(out, images)


def test_shared_encoders_and_joint_phase(small, tmp_path):
    from astrocore.methods.batmm import fit
    from astrocore.methods.batmm.fit import model_inputs, split_indices, train_encoder

    config = BatmmConfig.preset("fast", encoder_epochs=1, fusion_epochs=1, joint_epochs=1, batch_size=32)
    split = split_indices(small.labels, config.test_fraction, config.val_fraction, config.seed)
    arrays = model_inputs(small)
    encoders = [train_encoder(kind, arrays, split, config)[0] for kind in ("spectrum", "image")]
    before = [{k: v.clone() for k, v in e.state_dict().items()} for e in encoders]
    run = fit(small, config, runs_root=tmp_path, encoders=tuple(encoders))
    assert set(run.record.history) == {"fusion", "joint"}  # the unimodal phases were skipped
    for encoder, state in zip(encoders, before):  # the shared encoders are copied, not trained further
        assert all(torch.equal(v, state[k]) for k, v in encoder.state_dict().items())
    changed = run.image_encoder.state_dict()
    assert any(not torch.equal(changed[k], before[1][k]) for k in changed if changed[k].is_floating_point())
    assert 0 <= run.record.metrics["test"]["f1"] <= 1


def test_data_make_bhb(tmp_path):
    from astrocore.cli import main
    from astrocore.data.dataset import Dataset

    assert main(["data", "make", "bhb", "--n", "20", "--seed", "2", "--snr", "30", "--out", str(tmp_path / "bhb.fits")]) == 0
    dataset = Dataset.load(tmp_path / "bhb.fits")
    assert dataset.spectra.shape == (20, 3522) and dataset.images.shape == (20, 5, 32, 32)
    assert dataset.bands == ("u", "g", "r", "i", "z") and set(dataset.labels["label"]) <= {0, 1}


def test_cancel_then_resume_gives_the_uninterrupted_run(small, tmp_path):
    from conftest import cancelled_then_resumed

    from astrocore.methods.batmm import fit

    config = BatmmConfig.preset("fast", encoder_epochs=2, fusion_epochs=2, batch_size=32)
    whole, resumed = cancelled_then_resumed(fit, small, config, tmp_path, stop_after=12)  # in the second phase
    np.testing.assert_allclose(resumed.predict_proba(small.spectra[:8], small.images[:8]),
                               whole.predict_proba(small.spectra[:8], small.images[:8]), atol=1e-5)
