"""The label emulator: the reference a disentangled decoder is compared with."""
import numpy as np
import pytest
from conftest import toy_spectra

from astrocore.data.dataset import DataError
from astrocore.methods.disentangle.emulator import EmulatorConfig, emulation_mse, estimated_label_mse, label_columns
from astrocore.methods.disentangle.fit import split_indices


def test_label_columns_are_the_physical_labels(toy_dataset):
    assert label_columns(toy_dataset) == ["teff", "logg", "feh", "afe"]  # not the fingerprint id


def test_emulator_predicts_held_out_chemistries_far_better_than_the_mean(toy_dataset):
    split = split_indices(toy_dataset.labels, 0.3, 0.1, seed=0)
    result = emulation_mse(toy_dataset, split, config=EmulatorConfig(epochs=30, batch_size=32))
    test = toy_dataset.spectra[split == 2]
    mean_guess = float(((test - toy_dataset.spectra[split == 0].mean(axis=0)) ** 2).mean())
    assert result["labels"] == ["teff", "logg", "feh", "afe"]
    assert result["n_inputs"] == 4 + 2 * 2 * 8  # Teff and logg also as 8 sines and 8 cosines each
    assert result["test_mse"] < 0.1 * mean_guess
    assert result["train_s"] > 0


def test_emulator_rejects_a_split_of_the_wrong_length(toy_dataset):
    with pytest.raises(DataError, match="split has 3 entries"):
        emulation_mse(toy_dataset, np.zeros(3), config=EmulatorConfig(epochs=1))
    with pytest.raises(ValueError, match="activation"):
        EmulatorConfig(activation="tanh")
    with pytest.raises(ValueError, match="fourier_frequencies"):
        EmulatorConfig(fourier_frequencies=0)


def test_emulator_without_fourier_features_sees_the_labels_alone(toy_dataset):
    split = split_indices(toy_dataset.labels, 0.3, 0.1, seed=0)
    result = emulation_mse(toy_dataset, split, config=EmulatorConfig(epochs=1, fourier_labels=()))
    assert result["n_inputs"] == 4


def test_emulator_uses_the_label_values_it_is_given():
    dataset = toy_spectra(n_fingerprints=30)
    split = split_indices(dataset.labels, 0.3, 0.1, seed=0)
    config = EmulatorConfig(epochs=30, batch_size=32)
    true = emulation_mse(dataset, split, config=config)
    # The same values passed explicitly give the same decoder; chemistry shuffled across stars
    # takes away what the weak lines need.
    values = dataset.label_array(true["labels"]).astype(np.float64)
    assert emulation_mse(dataset, split, config=config, label_values=values)["test_mse"] == pytest.approx(true["test_mse"])
    shuffled = values.copy()
    shuffled[:, 2:] = np.random.default_rng(0).permutation(values[:, 2:])
    assert emulation_mse(dataset, split, config=config, label_values=shuffled)["test_mse"] > 3 * true["test_mse"]
    with pytest.raises(DataError, match="label_values has shape"):
        emulation_mse(dataset, split, config=config, label_values=values[:, :2])


def test_estimated_labels_are_read_from_the_spectra_of_unseen_stars():
    dataset = toy_spectra(n_fingerprints=30)
    split = split_indices(dataset.labels, 0.3, 0.1, seed=0)
    config = EmulatorConfig(epochs=30, batch_size=32)
    result = estimated_label_mse(dataset, split, ("teff", "logg"), config=config)
    assert set(result["estimate_r2"]) == {"feh", "afe"}  # the conditioned labels are given, not estimated
    assert min(result["estimate_r2"].values()) > 0.8  # each has its own line in the toy spectra
    test = dataset.spectra[split == 2]
    mean_guess = float(((test - dataset.spectra[split == 0].mean(axis=0)) ** 2).mean())
    assert result["test_mse"] < 0.05 * mean_guess
    assert result["train_s"] > 0
    assert set(estimated_label_mse(dataset, split, ("teff", "logg", "feh"), config=config)["estimate_r2"]) == {"afe"}


def test_estimated_labels_reject_impossible_requests(toy_dataset):
    split = split_indices(toy_dataset.labels, 0.3, 0.1, seed=0)
    with pytest.raises(DataError, match="nothing for a latent to hold"):
        estimated_label_mse(toy_dataset, split, ("teff", "logg", "feh", "afe"), config=EmulatorConfig(epochs=1))
    with pytest.raises(DataError, match=r"\['vmic'\] are not"):
        estimated_label_mse(toy_dataset, split, ("teff", "vmic"), config=EmulatorConfig(epochs=1))
    with pytest.raises(DataError, match="split has 3 entries"):
        estimated_label_mse(toy_dataset, np.zeros(3), ("teff",), config=EmulatorConfig(epochs=1))
