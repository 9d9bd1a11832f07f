"""A decoder from every label of a star to its spectrum: the reference for disentangled decoders.

A disentangled latent holds, at best, the labels that the conditional parameters leave out, so a
disentangler's decoder sees no more about a held-out star than a decoder given all of its true
labels (Teff, logg and every abundance). Trained on the same stars, with the decoder's layer sizes
and the shared training loop, this emulator's error on held-out chemistries estimates how close any
disentangled reconstruction can come; the unconstrained (noat) autoencoder, whose latent passes the
spectrum's own shape, is not bound by it. The bench reports it as ``recon_mse["labels"]``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...data.dataset import DataError, Dataset
from ...training import LoopSettings, seed_everything, train
from .fit import DecoderFitTask, flux_scaling
from .model import ACTIVATIONS, PolynomialReader, fourier_features, mlp


@dataclass(frozen=True)
class EmulatorConfig:
    """The label-to-spectrum decoder and its schedule. The defaults are the best of a small search
    on the APOGEE-like grid (SiLU, a cosine-decayed rate of 3e-3): the reference should be as
    strong as the budget allows, as a probe should."""

    hidden: tuple[int, ...] = (256, 512)
    # Labels also given as Fourier features of their training range (as the disentangler's
    # ``cp_features="fourier"``): Teff and logg shape a spectrum far from linearly, and these
    # features cut the held-out error 3.7x on the APOGEE-like grid. Labels the data lacks are skipped.
    fourier_labels: tuple[str, ...] = ("teff", "logg")
    fourier_frequencies: int = 8
    activation: str = "silu"
    learning_rate: float = 3e-3
    lr_schedule: str = "cosine"
    epochs: int = 20
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(v) for v in self.hidden))
        object.__setattr__(self, "fourier_labels", tuple(self.fourier_labels))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}; got {self.activation!r}.")
        if self.epochs < 1 or self.batch_size < 1 or self.fourier_frequencies < 1:
            raise ValueError("epochs, batch_size and fourier_frequencies must be >= 1.")


def label_columns(dataset: Dataset) -> list[str]:
    """The physical labels of a dataset: its float columns (Teff, logg, abundances; not ids)."""
    return [name for name in dataset.labels.colnames if dataset.labels[name].dtype.kind == "f"]


def _split_parts(dataset: Dataset, split: np.ndarray, test_index: np.ndarray | None):
    """(train, validation, test) indices of a run's split (0, 1, 2), or the given test objects."""
    split = np.asarray(split)
    if len(split) != len(dataset):
        raise DataError(f"split has {len(split)} entries for {len(dataset)} spectra.")
    train_index, val_index = np.flatnonzero(split == 0), np.flatnonzero(split == 1)
    test_index = np.flatnonzero(split == 2) if test_index is None else np.asarray(test_index)
    if len(train_index) == 0 or len(test_index) == 0:
        raise DataError("The split needs training (0) and test (2) objects.")
    return train_index, val_index, test_index


def _standardised(values: np.ndarray, train_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float32 values standardised by the training objects, their mean, their spread)."""
    mean, std = values[train_index].mean(axis=0), np.maximum(values[train_index].std(axis=0), 1e-12)
    return ((values - mean) / std).astype(np.float32), mean, std


def _scaled_flux(dataset: Dataset, train_index: np.ndarray):
    """(flux, offset, scale, scaled flux), float32, scaled as the disentangler's fast preset does."""
    flux = dataset.spectra.astype(np.float32)
    offset, scale = (part.astype(np.float32) for part in flux_scaling(flux[train_index], "standard"))
    return flux, offset, scale, (flux - offset) / scale


def _fit(network: nn.Module, learning_rate: float, inputs: np.ndarray, targets: np.ndarray,
         train_index: np.ndarray, val_index: np.ndarray, config: EmulatorConfig):
    """Fit ``network`` (inputs -> targets) with the shared loop; it ends at its best epoch."""
    settings = LoopSettings(epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
                            device=config.device, lr_schedule=config.lr_schedule)

    def arrays(index):
        return {"inputs": inputs[index], "target": targets[index]}

    return train(DecoderFitTask(network, learning_rate), arrays(train_index),
                 arrays(val_index) if len(val_index) else None, settings)


def emulation_mse(dataset: Dataset, split: np.ndarray, test_index: np.ndarray | None = None,
                  labels: list[str] | None = None, config: EmulatorConfig = EmulatorConfig(),
                  label_values: np.ndarray | None = None) -> dict:
    """Train the label emulator on ``split == 0`` (validating on ``split == 1``) and return its
    mean per-pixel squared error in flux units on ``test_index`` (default: all of ``split == 2``)
    and on the training objects: ``{"test_mse", "train_mse", "labels", "n_inputs", "train_s"}``
    (``n_inputs``: the decoder's input width, labels plus their Fourier features).

    ``split`` is a disentangling run's split, so the numbers compare with its reconstruction.
    ``label_values`` (n_objects x len(labels), physical units) replaces the catalogue's values,
    e.g. with labels estimated from the spectra (:func:`estimated_label_mse`).
    """
    labels = list(labels or label_columns(dataset))
    if not labels:
        raise DataError("The dataset has no float label columns to emulate spectra from.")
    train_index, val_index, test_index = _split_parts(dataset, split, test_index)

    seed_everything(config.seed)
    values = (dataset.label_array(labels) if label_values is None else np.asarray(label_values)).astype(np.float64)
    if values.shape != (len(dataset), len(labels)):
        raise DataError(f"label_values has shape {values.shape}; expected {(len(dataset), len(labels))}.")
    scaled_labels = _standardised(values, train_index)[0]
    expanded = [name for name in config.fourier_labels if name in labels]
    if expanded:
        columns = values[:, [labels.index(name) for name in expanded]]
        low, high = columns[train_index].min(axis=0), columns[train_index].max(axis=0)
        fraction = torch.as_tensor((columns - low) / np.maximum(high - low, 1e-12))
        scaled_labels = np.concatenate(
            [scaled_labels, fourier_features(fraction, config.fourier_frequencies).numpy().astype(np.float32)], axis=1)
    flux, flux_offset, flux_scale, scaled_flux = _scaled_flux(dataset, train_index)

    decoder = mlp([scaled_labels.shape[1], *config.hidden, dataset.n_pixels], config.activation)
    history = _fit(decoder, config.learning_rate, scaled_labels, scaled_flux, train_index, val_index, config)
    decoder.cpu()

    def mse(index) -> float:
        with torch.no_grad():
            predicted = decoder(torch.as_tensor(scaled_labels[index])).numpy() * flux_scale + flux_offset
        return float(((predicted - flux[index]) ** 2).mean())

    # A random subsample of the training objects as large as the test set: cheap and unbiased.
    train_sample = np.random.default_rng(config.seed).choice(
        train_index, size=min(len(train_index), len(test_index)), replace=False)
    return {"test_mse": mse(test_index), "train_mse": mse(train_sample),
            "labels": labels, "n_inputs": int(scaled_labels.shape[1]), "train_s": round(history.seconds, 2)}


def estimated_label_mse(dataset: Dataset, split: np.ndarray, conditional: tuple[str, ...],
                        test_index: np.ndarray | None = None, config: EmulatorConfig = EmulatorConfig(),
                        n_components: int = 200) -> dict:
    """The label emulator fed labels *estimated from the spectra*: the reference for a latent that
    holds the unconditioned labels and nothing else.

    A disentangled latent must be the same at every Teff and log g of a star, so at best it holds
    the star's other labels as they can be read from one spectrum. Here a supervised reader learns
    them from (spectrum, conditional parameters) on ``split == 0``: a ridge regression (one
    regularisation per label, chosen by leave-one-out cross-validation) on the features of the
    disentangler's ``cp-polynomial`` encoder, i.e. the spectrum's ``n_components`` leading
    principal components times quadratic monomials of the standardised conditional parameters
    (:class:`~astrocore.models.disentangler.PolynomialReader`). On the APOGEE-like grid it reads
    every abundance of unseen chemistries at R^2 0.85-1.00, where an MLP regressor of the MLP
    encoder's sizes read N, Al, Mn and Ni at 0.75 or less. The emulator is then trained and tested
    on (conditional parameters, estimates). It is a reference, not a strict bound: an unsupervised
    latent may hold other functions of the chemistry, weighted by how much each changes the spectrum.

    Returns ``{"test_mse", "train_mse"}`` (flux units squared, as :func:`emulation_mse`),
    ``"estimate_r2"`` (each estimated label's R^2 on ``test_index``) and ``"train_s"``.
    """
    from sklearn.linear_model import RidgeCV

    labels = label_columns(dataset)
    missing = [name for name in conditional if name not in labels]
    if missing:
        raise DataError(f"Conditional parameters {missing} are not float label columns of the dataset.")
    estimated = [name for name in labels if name not in conditional]
    if not estimated:
        raise DataError("Every label is conditioned: there is nothing for a latent to hold.")
    train_index, _, test_index = _split_parts(dataset, split, test_index)

    # The reader is deterministic (its SVD seeds itself); emulation_mse seeds the decoder's training.
    started = time.perf_counter()
    values = dataset.label_array(labels).astype(np.float64)
    scaled_labels, mean, std = _standardised(values, train_index)
    scaled_flux = torch.as_tensor(_scaled_flux(dataset, train_index)[3])
    conditional_columns = [labels.index(name) for name in conditional]
    estimated_columns = [labels.index(name) for name in estimated]
    reader = PolynomialReader(dataset.n_pixels, len(conditional), n_components, n_out=len(estimated))
    reader.set_components(scaled_flux[train_index], seed=config.seed)
    features = reader.all_features(
        torch.cat([scaled_flux, torch.as_tensor(scaled_labels[:, conditional_columns])], dim=1)).numpy()
    targets = scaled_labels[:, estimated_columns]
    ridge = RidgeCV(alphas=np.logspace(-3, 4, 15), alpha_per_target=True).fit(
        features[train_index], targets[train_index])
    estimates = ridge.predict(features).reshape(len(features), -1)  # (n,) for a single label
    reader_seconds = time.perf_counter() - started
    residual = ((estimates[test_index] - targets[test_index]) ** 2).mean(axis=0)
    r2 = 1 - residual / np.maximum(targets[test_index].var(axis=0), 1e-12)
    physical = values.copy()
    physical[:, estimated_columns] = estimates * std[estimated_columns] + mean[estimated_columns]
    result = emulation_mse(dataset, split, test_index, labels, config, label_values=physical)
    return {"test_mse": result["test_mse"], "train_mse": result["train_mse"],
            "estimate_r2": {name: round(float(value), 4) for name, value in zip(estimated, r2)},
            "train_s": round(reader_seconds + result["train_s"], 2)}
