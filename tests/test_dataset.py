import numpy as np
import pytest
from astropy.table import Table
from conftest import toy_spectra

from astrocore.data.dataset import DataError, Dataset


def test_units_attached_and_summary(toy_dataset):
    assert str(toy_dataset.labels["teff"].unit) == "K"
    summary = toy_dataset.summary()
    assert summary["n_objects"] == len(toy_dataset) == 144
    assert summary["wavelength_aa"] == (8460.0, 8700.0)


@pytest.mark.parametrize("suffix", [".fits", ""])
def test_save_load_round_trip(tmp_path, toy_dataset, suffix):
    toy_dataset.provenance["seed"] = 3
    path = toy_dataset.save(tmp_path / f"toy{suffix}")
    loaded = Dataset.load(path)
    np.testing.assert_array_equal(loaded.spectra, toy_dataset.spectra)
    np.testing.assert_array_equal(loaded.wavelength, toy_dataset.wavelength)
    assert loaded.labels.colnames == toy_dataset.labels.colnames
    np.testing.assert_array_equal(loaded.labels["logg"], toy_dataset.labels["logg"])
    assert str(loaded.labels["teff"].unit) == "K"
    assert loaded.provenance == toy_dataset.provenance


def test_bad_input_names_the_problem(tmp_path):
    wavelength = np.linspace(1, 2, 5)
    with pytest.raises(DataError, match="pixels"):
        Dataset(np.ones((3, 4)), wavelength, Table({"teff": [1, 2, 3]}))
    with pytest.raises(DataError, match="NaN"):
        Dataset(np.full((3, 5), np.nan), wavelength, Table({"teff": [1, 2, 3]}))
    with pytest.raises(DataError, match="increasing"):
        Dataset(np.ones((3, 5)), wavelength[::-1], Table({"teff": [1, 2, 3]}))
    with pytest.raises(DataError, match="label rows"):
        Dataset(np.ones((3, 5)), wavelength, Table({"teff": [1, 2]}))
    not_fits = tmp_path / "spectra.fits"
    not_fits.write_text("this is not FITS")
    with pytest.raises(DataError):
        Dataset.load(not_fits)


def test_subset_keeps_rows():
    dataset = toy_spectra(2)
    part = dataset.subset(dataset.labels["fingerprint"] == 1)
    assert len(part) == 12 and set(part.labels["fingerprint"]) == {1}
