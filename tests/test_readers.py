"""Readers of real spectra: APOGEE, The Payne's npz, GANDALF folders, FITS / CSV tables."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy.optimize import least_squares

from astrocore.data.dataset import DataError, Dataset
from astrocore.data.readers import (BAD_PIXEL_ERROR, check_compatible, read_apogee, read_gandalf_folder, read_npz,
                                    read_spectra, read_table, resample_to, standard_label_name, to_apogee_grid,
                                    write_gandalf_folder, write_table)
from astrocore.data.simulators.apogee_grid import APOGEE_FULL_N_PIXELS, apogee_pixel_indices, apogee_wavelength
from astrocore.data.simulators.payne import PayneEmulator

PAYNE = Path(__file__).resolve().parents[2] / "shared" / "data" / "payne"
STAR = PAYNE / "apogee_real_2M13012770+5754582.npz"
VISITS = PAYNE / "apogee_real_visits_2M06133561+2433362.npz"


@pytest.fixture(scope="module")
def shared():
    if not STAR.exists() or not VISITS.exists():
        pytest.skip("../shared/data/payne not present (fresh clone); the real-APOGEE tests need "
                    "the reference files that CI provides beside the checkout.")
    return PAYNE


@pytest.fixture(scope="module")
def star(shared):
    return read_spectra(STAR)


@pytest.fixture(scope="module")
def visits(shared):
    return read_spectra(VISITS)


def _small_dataset(n=4, n_pix=30, errors=True):
    rng = np.random.default_rng(7)
    wavelength = np.linspace(5000.0, 5100.0, n_pix)
    labels = Table({"id": [f"star{i}" for i in range(n)],
                    "teff": rng.uniform(4000, 6000, n), "logg": rng.uniform(1, 5, n),
                    "feh": rng.uniform(-1, 0.3, n), "afe": rng.uniform(0, 0.4, n),
                    "snr": rng.uniform(20, 200, n)})
    spectra = 1 - 0.3 * rng.random((n, n_pix))
    return Dataset(spectra, wavelength, labels,
                   np.full((n, n_pix), 0.01) if errors else None, {"generator": "test"})


# --------------------------------------------------------------------------- real APOGEE data
def test_real_star_and_visits_through_read_spectra(star, visits, shared):
    with np.load(shared / "apogee_wavelength.npz") as f:
        reference = f["wavelength"]
    assert star.spectra.shape == (1, 7214) and star.errors.shape == (1, 7214)
    np.testing.assert_allclose(star.wavelength, reference, rtol=0, atol=1e-6)
    assert star.labels["id"][0] == "2M13012770+5754582"
    with np.load(STAR) as f:
        np.testing.assert_array_equal(star.spectra[0], f["spectrum"])
    assert star.provenance["sha256"] and star.provenance["file"] == STAR.name
    assert visits.spectra.shape == (3, 7214)
    assert {"snr", "vhelio", "hjd", "apogee_id"} <= set(visits.labels.colnames)
    assert list(visits.labels["id"]) == [f"2M06133561+2433362_visit{k}" for k in (1, 2, 3)]
    assert visits.labels["vhelio"][0] == pytest.approx(17.6236, abs=1e-3)
    assert star.provenance["wavelength_source"].startswith("APOGEE")


def _full_grid(spectra_7214, fill=0.0):
    spectra_7214 = np.atleast_2d(spectra_7214)
    full = np.full((len(spectra_7214), APOGEE_FULL_N_PIXELS), fill, dtype=np.float32)
    full[:, apogee_pixel_indices()] = spectra_7214
    return full


def _wcs(header):
    header["CRVAL1"] = 4.179
    header["CDELT1"] = 6e-6
    header["CRPIX1"] = 1
    header["CTYPE1"] = "LOG-LINEAR"
    header["DC-FLAG"] = 1


def test_apstar_like_file(visits, tmp_path):
    scale = 1.0e3 * (1 + 0.2 * (apogee_wavelength() - 16000) / 1000)  # raw, sloped flux
    visit_flux = visits.spectra * scale
    combined = visit_flux.mean(axis=0)
    flux = _full_grid(np.vstack([combined, combined, visit_flux]))
    errors = _full_grid(np.vstack([visits.errors[0], visits.errors[0], visits.errors]) * scale)
    flux[3, 5000] = np.nan  # a bad in-chip pixel in visit 2
    primary = fits.PrimaryHDU()
    primary.header.update(TELESCOP="apo25m", OBJID="2M06133561+2433362", NVISITS=3,
                          VHELIO1=17.6236, VHELIO2=-47.4247, VHELIO3=-42.6253, SNR=170.0)
    hdu1, hdu2 = fits.ImageHDU(flux), fits.ImageHDU(errors)
    _wcs(hdu1.header)
    path = tmp_path / "apStar-dr17-2M06133561+2433362.fits"
    fits.HDUList([primary, hdu1, hdu2, fits.ImageHDU(np.zeros(flux.shape, np.int16))]
                 ).writeto(path)

    combined_only = read_apogee(path, normalize=False)
    assert combined_only.spectra.shape == (1, APOGEE_FULL_N_PIXELS)
    assert combined_only.provenance["kind"] == "apStar"
    assert combined_only.labels["id"][0] == "2M06133561+2433362"
    np.testing.assert_allclose(combined_only.wavelength, apogee_wavelength(full=True), rtol=1e-12)
    gaps = combined_only.provenance["bad_pixels"]["in_chip_gaps_per_spectrum"]
    assert gaps == [APOGEE_FULL_N_PIXELS - 7214]

    raw = read_apogee(path, rows="visits", normalize=False, trim_gaps=True)
    assert raw.spectra.shape == (3, 7214)
    np.testing.assert_allclose(raw.wavelength, apogee_wavelength(), rtol=0, atol=1e-6)
    keep = np.ones(7214, bool)
    keep[np.searchsorted(apogee_pixel_indices(), 5000)] = False
    np.testing.assert_allclose(raw.spectra[:, keep], visit_flux[:, keep].astype(np.float32),
                               rtol=1e-6)
    assert raw.errors[1, ~keep][0] > 1e3 * BAD_PIXEL_ERROR * 0.5  # bad pixel: huge error
    assert list(raw.labels["vhelio"]) == pytest.approx([17.6236, -47.4247, -42.6253])
    assert raw.provenance["bad_pixels"]["count_per_spectrum"][1] == \
        APOGEE_FULL_N_PIXELS - 7214 + 1

    # the default path users take: read_spectra -> continuum-normalised combined spectrum
    normalised = read_spectra(path, rows="visits", trim_gaps=True)
    assert normalised.provenance["normalized"] is True
    assert "continuum_normalisation" in normalised.provenance
    ratio = normalised.spectra[:, keep] / visits.spectra[:, keep]
    assert np.all(np.abs(np.median(ratio, axis=1) - 1) < 0.02)
    assert normalised.spectra[1, ~keep][0] == 1.0


def test_aspcapstar_like_file(star, tmp_path):
    flux = _full_grid(star.spectra[0])[0]
    errors = _full_grid(star.errors[0], fill=0.0)[0]
    primary = fits.PrimaryHDU()
    primary.header["OBJID"] = "2M13012770+5754582"
    hdu1, hdu2 = fits.ImageHDU(flux), fits.ImageHDU(errors)
    _wcs(hdu1.header)
    _wcs(hdu2.header)
    params = fits.BinTableHDU(Table({"APOGEE_ID": ["2M13012770+5754582"], "TEFF": [4905.0],
                                     "LOGG": [4.52], "M_H": [-0.2], "ALPHA_M": [-9999.0]}))
    path = tmp_path / "aspcapStar-dr17-2M13012770+5754582.fits"
    fits.HDUList([primary, hdu1, hdu2, fits.ImageHDU(flux), params]).writeto(path)

    for data in (read_apogee(path), read_spectra(path)):
        assert data.provenance["kind"] == "aspcapStar"
        assert data.spectra.shape == (1, APOGEE_FULL_N_PIXELS)
        assert data.labels["teff"][0] == 4905.0 and data.labels["feh"][0] == -0.2
        assert "afe" not in data.labels.colnames  # -9999 sentinel dropped
        gap = np.ones(APOGEE_FULL_N_PIXELS, bool)
        gap[apogee_pixel_indices()] = False
        assert np.all(data.spectra[0, gap] == 1.0)
        assert np.all(data.errors[0, gap] == BAD_PIXEL_ERROR)
        on_grid = to_apogee_grid(data)
        assert on_grid.n_pixels == 7214
        np.testing.assert_allclose(on_grid.wavelength, star.wavelength, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(on_grid.spectra, star.spectra)
        np.testing.assert_array_equal(on_grid.errors, star.errors)
        check_compatible(on_grid, apogee_wavelength())
    # the full grid is not what a 7214-pixel model expects; the message says what to do
    with pytest.raises(DataError) as info:
        check_compatible(data, apogee_wavelength())
    message = str(info.value)
    assert "8575 pixels over" in message and "model expects 7214 pixels over" in message
    assert "to_apogee_grid" in message and path.name in message


def test_real_star_fit_recovers_published_labels(star, shared):
    """The normalised dwarf emulator + APOGEE wavelength grid reproduce the real star."""
    start = time.perf_counter()
    emulator = PayneEmulator.load(shared / "nn_apogee_5label_normalized_dwarfs.npz")
    check_compatible(star, emulator.wavelength)
    with np.load(shared / "apogee_mask.npz") as f:
        mask = f["apogee_mask"]
    weight = np.where(mask, 0.0, 1.0 / star.errors[0].astype(np.float64))
    flux = star.spectra[0].astype(np.float64)

    def residuals(scaled):
        return (emulator.render_scaled(scaled[None], dtype=np.float64)[0] - flux) * weight

    fit = least_squares(residuals, np.zeros(emulator.n_labels), bounds=(-0.5, 0.5))
    labels = (fit.x + 0.5) * (emulator.x_max - emulator.x_min) + emulator.x_min
    teff, logg = labels[0], labels[1]
    assert abs(teff - 4900) < 300, labels
    assert abs(logg - 4.5) < 0.4, labels
    assert np.mean(residuals(fit.x) ** 2) < 10  # reduced chi2 of a good fit
    assert time.perf_counter() - start < 10


# --------------------------------------------------------------------------- GANDALF
def test_gandalf_round_trip(tmp_path):
    data = _small_dataset()
    folder = write_gandalf_folder(data, tmp_path / "gandalf")
    assert sorted(p.name for p in folder.iterdir()) == [
        "X.npy", "axis_labels.npy", "errors.npy", "ids.npy", "param_names.npy", "params.npy", "provenance.json"]
    np.testing.assert_array_equal(np.load(folder / "axis_labels.npy"), data.wavelength)  # GANDALF's layout
    assert list(np.load(folder / "param_names.npy")) == ["Teff", "logg", "[M/H]", "[alpha/Fe]", "snr"]
    back = read_gandalf_folder(folder)
    again = read_spectra(folder)
    for loaded in (back, again):
        np.testing.assert_array_equal(loaded.spectra, data.spectra)
        np.testing.assert_array_equal(loaded.wavelength, data.wavelength)
        np.testing.assert_array_equal(loaded.errors, data.errors)
        assert list(loaded.labels["id"]) == list(data.labels["id"])
        for name in ("teff", "logg", "feh", "afe", "snr"):
            np.testing.assert_array_equal(loaded.labels[name], data.labels[name])
        assert loaded.labels["teff"].unit == "K"
        assert loaded.provenance["generator"] == "test"


def test_gandalf_without_wavelength_and_bad_files(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    np.save(folder / "X.npy", np.ones((3, 10), np.float32))
    np.save(folder / "params.npy", np.array([[5000, 4.0, 0.0, 0.1]] * 3))
    np.save(folder / "ids.npy", np.array(["a", "b", "c"]))
    np.save(folder / "axis_labels.npy", np.array(["Teff", "logg", "[M/H]", "[alpha/Fe]"]))
    with pytest.raises(DataError, match=r"no wavelength.npy.*wavelength=") as info:
        read_gandalf_folder(folder)
    assert str(folder) in str(info.value)
    data = read_spectra(folder, wavelength=np.linspace(6000, 6010, 10))
    assert data.labels.colnames == ["id", "teff", "logg", "feh", "afe"]
    with pytest.raises(DataError, match="10 pixels per spectrum"):
        read_gandalf_folder(folder, wavelength=np.linspace(6000, 6010, 11))
    np.save(folder / "params.npy", np.zeros((2, 4)))
    with pytest.raises(DataError, match=r"params.npy.*shape \(2, 4\)"):
        read_gandalf_folder(folder, wavelength=np.linspace(6000, 6010, 10))
    np.save(folder / "params.npy", np.zeros((3, 3)))
    with pytest.raises(DataError, match="axis_labels.npy.*4 names"):
        read_gandalf_folder(folder, wavelength=np.linspace(6000, 6010, 10))
    np.save(folder / "params.npy", np.zeros((3, 4)))
    np.save(folder / "ids.npy", np.array(["a", None, 3], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickled.*never unpickles"):
        read_gandalf_folder(folder, wavelength=np.linspace(6000, 6010, 10))
    np.save(folder / "ids.npy", np.array(["a", "b", "c"]))
    spectra = np.ones((3, 10))
    spectra[1, 4] = np.nan
    np.save(folder / "X.npy", spectra)
    with pytest.raises(DataError, match=r"X.npy.*NaN or infinite flux in 1 spectrum.*row 1"):
        read_gandalf_folder(folder, wavelength=np.linspace(6000, 6010, 10))
    with pytest.raises(DataError, match="no X.npy"):
        read_gandalf_folder(tmp_path)
    with pytest.raises(DataError, match="GANDALF"):
        read_spectra(tmp_path)


# --------------------------------------------------------------------------- tables
def test_fits_table_round_trips(tmp_path):
    data = _small_dataset()
    path = write_table(data, tmp_path / "spectra.fits")
    for loaded in (read_table(path), read_spectra(path)):
        np.testing.assert_array_equal(loaded.spectra, data.spectra)
        np.testing.assert_array_equal(loaded.wavelength, data.wavelength)
        np.testing.assert_array_equal(loaded.errors, data.errors)
        assert list(loaded.labels["id"]) == list(data.labels["id"])
        np.testing.assert_array_equal(loaded.labels["teff"], data.labels["teff"])

    # image HDU + WAVELENGTH extension in nm + IVAR + a labels table with survey-style names
    image = fits.PrimaryHDU(data.spectra)
    wave = fits.ImageHDU(data.wavelength / 10.0, name="WAVELENGTH")
    wave.header["BUNIT"] = "nm"
    ivar = fits.ImageHDU(np.full(data.spectra.shape, 1.0e4), name="IVAR")
    labels = fits.BinTableHDU(Table({"Teff": np.asarray(data.labels["teff"]),
                                     "FE_H": np.asarray(data.labels["feh"])}),
                              name="LABELS_TABLE")
    other = tmp_path / "image.fits"
    fits.HDUList([image, wave, ivar, labels]).writeto(other)
    loaded = read_spectra(other)
    np.testing.assert_allclose(loaded.wavelength, data.wavelength, rtol=1e-12)
    np.testing.assert_allclose(loaded.errors, 0.01)
    assert {"teff", "feh"} <= set(loaded.labels.colnames)

    # image + linear WCS keywords, no extension
    image = fits.PrimaryHDU(data.spectra)
    image.header.update(CRVAL1=5000.0, CDELT1=100.0 / 29, CRPIX1=1, CTYPE1="WAVE",
                        CUNIT1="Angstrom")
    wcs = tmp_path / "wcs.fits"
    image.writeto(wcs)
    np.testing.assert_allclose(read_table(wcs).wavelength, data.wavelength, rtol=1e-10)

    # SDSS-like: one spectrum, rows = pixels, log10 wavelength column
    sdss = fits.BinTableHDU(Table({"flux": data.spectra[0], "loglam": np.log10(data.wavelength),
                                   "ivar": np.full(30, 1.0e4)}))
    one = tmp_path / "spec-1234.fits"
    fits.HDUList([fits.PrimaryHDU(), sdss]).writeto(one)
    single = read_spectra(one)
    assert single.spectra.shape == (1, 30)
    np.testing.assert_allclose(single.wavelength, data.wavelength, rtol=1e-9)


def test_csv_round_trips(tmp_path):
    data = _small_dataset()
    path = write_table(data, tmp_path / "spectra.csv")
    for loaded in (read_table(path), read_spectra(path)):
        np.testing.assert_array_equal(loaded.spectra, data.spectra)
        np.testing.assert_array_equal(loaded.wavelength, data.wavelength)
        np.testing.assert_array_equal(loaded.errors, data.errors)
        assert list(loaded.labels["id"]) == list(data.labels["id"])
        np.testing.assert_allclose(loaded.labels["logg"], data.labels["logg"])

    # bare numeric column names + survey label names
    frame = pd.DataFrame(data.spectra, columns=[f"{w:.4f}" for w in data.wavelength])
    frame.insert(0, "Teff", np.asarray(data.labels["teff"]))
    frame.insert(1, "name", ["a", "b", "c", "d"])
    bare = tmp_path / "bare.csv"
    frame.to_csv(bare, index=False)
    loaded = read_spectra(bare)
    np.testing.assert_allclose(loaded.wavelength, data.wavelength, atol=1e-4)
    assert "teff" in loaded.labels.colnames and list(loaded.labels["name"]) == list("abcd")

    # long layout: one spectrum
    long = tmp_path / "one.csv"
    pd.DataFrame({"wavelength": data.wavelength, "flux": data.spectra[0],
                  "error": data.errors[0]}).to_csv(long, index=False)
    single = read_table(long)
    assert single.spectra.shape == (1, 30)
    np.testing.assert_allclose(single.spectra[0], data.spectra[0], rtol=1e-6)

    # pixel-index columns need a wavelength argument
    indexed = tmp_path / "indexed.csv"
    pd.DataFrame(data.spectra).to_csv(indexed, index=False)
    with pytest.raises(DataError, match="pixel indices.*wavelength="):
        read_table(indexed)
    np.testing.assert_allclose(read_table(indexed, wavelength=data.wavelength).wavelength,
                               data.wavelength)


def test_npz_reader_and_dataset_files(tmp_path):
    data = _small_dataset()
    np.savez(tmp_path / "s.npz", spectra=data.spectra, spec_errs=data.errors,
             wavelength=data.wavelength, snrs=np.arange(4.0))
    loaded = read_npz(tmp_path / "s.npz")
    assert loaded.labels.colnames == ["id", "snr"]
    np.testing.assert_array_equal(loaded.spectra, data.spectra)
    saved = data.save(tmp_path / "ds.fits")
    assert read_spectra(saved).provenance == data.provenance
    folder = data.save(tmp_path / "ds_folder")
    np.testing.assert_array_equal(read_spectra(folder).spectra, data.spectra)


# --------------------------------------------------------------------------- compatibility
def test_check_compatible_and_resample(star):
    model = np.linspace(15200.0, 15300.0, 200)
    with pytest.raises(DataError, match=r"the spectra have 7214 pixels over 15168.13-16936.75 "
                                        r"Angstrom but the model expects 200 pixels over "
                                        r"15200.00-15300.00 Angstrom.*resample_to"):
        check_compatible(star, model)
    resampled = resample_to(star, model)
    check_compatible(resampled, model)
    assert resampled.provenance["resampled"]["method"] == "linear interpolation"
    np.testing.assert_allclose(resampled.spectra[0],
                               np.interp(model, star.wavelength, star.spectra[0]), rtol=1e-5)
    with pytest.raises(DataError, match="cover"):
        resample_to(star, np.linspace(15000.0, 15300.0, 50))
    chip_gap = np.linspace(15700.0, 15900.0, 50)  # between the blue and green chips
    with pytest.raises(DataError, match="gaps"):
        resample_to(star, chip_gap)
    filled = resample_to(star, chip_gap, fill_gaps=True)
    assert filled.provenance["resampled"]["gap_pixels_filled"] > 0
    shifted = Dataset(star.spectra, star.wavelength + 0.5, star.labels, star.errors, {})
    with pytest.raises(DataError, match="max offset 0.5"):
        check_compatible(shifted, star.wavelength)


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_data_error_naming_the_file(tmp_path):
    text = tmp_path / "notes.fits"
    text.write_text("this is not a FITS file\n")
    for reader in (read_apogee, read_table, read_spectra):
        with pytest.raises(DataError, match="notes.fits.*not a FITS file"):
            reader(text)
    for name in ("empty.csv", "empty.fits", "empty.npz"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(DataError, match=f"{name}.*empty"):
            read_spectra(tmp_path / name)
    with pytest.raises(DataError, match="no such file"):
        read_spectra(tmp_path / "absent.fits")

    words = tmp_path / "words.csv"
    words.write_text("name,colour\nvega,blue\nbetelgeuse,red\n")
    with pytest.raises(DataError, match="words.csv.*no numeric columns"):
        read_table(words)
    header_only = tmp_path / "header.csv"
    header_only.write_text("teff,5000.0,5001.0\n")
    with pytest.raises(DataError, match="no data rows"):
        read_table(header_only)
    nan_flux = tmp_path / "nan.csv"
    nan_flux.write_text("teff,5000.0,5001.0\n4000,1.0,\n4100,0.9,0.8\n")
    with pytest.raises(DataError, match="nan.csv.*NaN flux values in 1 spectrum.*row 1"):
        read_table(nan_flux)
    letters = tmp_path / "letters.csv"
    letters.write_text("teff,5000.0,5001.0\n4000,1.0,abc\n")
    with pytest.raises(DataError, match="non-numeric flux value 'abc'"):
        read_table(letters)
    microns = tmp_path / "microns.csv"
    microns.write_text("wavelength,flux\n1.51,1.0\n1.52,0.9\n")
    with pytest.raises(DataError, match="microns"):
        read_table(microns)

    np.savez(tmp_path / "keys.npz", foo=np.ones(3))
    with pytest.raises(DataError, match="keys.npz.*'spectra' or 'spectrum'"):
        read_spectra(tmp_path / "keys.npz")
    np.savez(tmp_path / "short.npz", spectrum=np.ones(100))
    with pytest.raises(DataError, match="100 pixels.*wavelength="):
        read_spectra(tmp_path / "short.npz")
    np.savez(tmp_path / "nan.npz", spectrum=np.full(7214, np.nan))
    with pytest.raises(DataError, match="nan.npz.*NaN"):
        read_spectra(tmp_path / "nan.npz")

    # FITS with mismatched HDU shapes / no wavelength / no spectra
    bad_err = tmp_path / "apStar-bad.fits"
    hdu1 = fits.ImageHDU(np.ones((3, 100), np.float32))
    _wcs(hdu1.header)
    fits.HDUList([fits.PrimaryHDU(), hdu1, fits.ImageHDU(np.ones((2, 100)))]).writeto(bad_err)
    with pytest.raises(DataError, match=r"apStar-bad.fits.*HDU2.*\(2, 100\)"):
        read_spectra(bad_err)
    no_wcs = tmp_path / "apStar-nowcs.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones(100))]).writeto(no_wcs)
    with pytest.raises(DataError, match="CRVAL1"):
        read_apogee(no_wcs)
    lone_image = tmp_path / "image.fits"
    fits.PrimaryHDU(np.ones((2, 50))).writeto(lone_image)
    with pytest.raises(DataError, match="image.fits.*no wavelength"):
        read_spectra(lone_image)
    no_spectra = tmp_path / "catalog.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"ra": [1.0]}))]).writeto(no_spectra)
    with pytest.raises(DataError, match="catalog.fits.*no spectra found"):
        read_table(no_spectra)
    np.savez(tmp_path / "ok.npz", spectrum=np.ones(7214))
    with pytest.raises(DataError, match="ok.npz.*do not apply"):
        read_spectra(tmp_path / "ok.npz", rows="all")


def test_standard_label_names():
    assert [standard_label_name(n) for n in ("Teff", "logg", "[M/H]", "[alpha/Fe]", "FE_H",
                                             "ALPHA_M", "S/N")] == \
        ["teff", "logg", "feh", "afe", "feh", "afe", "s_n"]


def test_a_folder_in_gandalfs_own_layout_loads_as_it_is(tmp_path):
    """GANDALF keeps the wavelength axis in axis_labels.npy and unnamed Teff, log g columns in params.npy."""
    from astrocore.data.readers import read_gandalf_folder, read_spectra, write_gandalf_folder

    rng = np.random.default_rng(1)
    wavelength = np.linspace(15150.0, 16950.0, 50)
    folder = tmp_path / "gandalf"
    folder.mkdir()
    np.save(folder / "X.npy", 1.0 - 0.1 * rng.random((6, 50)).astype(np.float32))
    np.save(folder / "params.npy", np.column_stack([np.linspace(4000, 5000, 6), np.linspace(1, 3, 6)]))
    np.save(folder / "ids.npy", np.arange(6))
    np.save(folder / "axis_labels.npy", wavelength)
    dataset = read_spectra(folder)
    np.testing.assert_allclose(dataset.wavelength, wavelength)
    assert {"teff", "logg"} <= set(dataset.labels.colnames) and dataset.labels["teff"][-1] == 5000
    # astrocore writes the same layout back, and reads its own folder again.
    write_gandalf_folder(dataset, tmp_path / "again")
    np.testing.assert_allclose(np.load(tmp_path / "again" / "axis_labels.npy"), wavelength)
    back = read_gandalf_folder(tmp_path / "again")
    np.testing.assert_allclose(back.spectra, dataset.spectra)
    np.testing.assert_allclose(back.labels["logg"], dataset.labels["logg"])
