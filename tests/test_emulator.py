"""The label emulator: the reference a disentangled decoder is compared with."""
import numpy as np
import pytest

from astrocore.data.dataset import DataError
from astrocore.models.disentangler import split_indices
from astrocore.models.emulator import EmulatorConfig, emulation_mse, label_columns


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
