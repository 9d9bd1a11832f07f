"""A decoder from every label of a star to its spectrum: the reference for disentangled decoders.

A disentangled latent holds, at best, the labels that the conditional parameters leave out, so a
disentangler's decoder sees no more about a held-out star than a decoder given all of its true
labels (Teff, logg and every abundance). Trained on the same stars, with the decoder's layer sizes
and the shared training loop, this emulator's error on held-out chemistries estimates how close any
disentangled reconstruction can come; the unconstrained (noat) autoencoder, whose latent passes the
spectrum's own shape, is not bound by it. The bench reports it as ``recon_mse["labels"]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.dataset import DataError, Dataset
from ..training import LoopSettings, seed_everything, train
from .disentangler import ACTIVATIONS, DecoderFitTask, flux_scaling, fourier_features, mlp


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


def emulation_mse(dataset: Dataset, split: np.ndarray, test_index: np.ndarray | None = None,
                  labels: list[str] | None = None, config: EmulatorConfig = EmulatorConfig()) -> dict:
    """Train the label emulator on ``split == 0`` (validating on ``split == 1``) and return its
    mean per-pixel squared error in flux units on ``test_index`` (default: all of ``split == 2``)
    and on the training objects: ``{"test_mse", "train_mse", "labels", "n_inputs", "train_s"}``
    (``n_inputs``: the decoder's input width, labels plus their Fourier features).

    ``split`` is a disentangling run's split, so the numbers compare with its reconstruction.
    """
    split = np.asarray(split)
    if len(split) != len(dataset):
        raise DataError(f"split has {len(split)} entries for {len(dataset)} spectra.")
    labels = list(labels or label_columns(dataset))
    if not labels:
        raise DataError("The dataset has no float label columns to emulate spectra from.")
    train_index, val_index = np.flatnonzero(split == 0), np.flatnonzero(split == 1)
    test_index = np.flatnonzero(split == 2) if test_index is None else np.asarray(test_index)
    if len(train_index) == 0 or len(test_index) == 0:
        raise DataError("The split needs training (0) and test (2) objects.")

    seed_everything(config.seed)
    values = dataset.label_array(labels).astype(np.float64)
    label_mean, label_std = values[train_index].mean(axis=0), np.maximum(values[train_index].std(axis=0), 1e-12)
    scaled_labels = ((values - label_mean) / label_std).astype(np.float32)
    expanded = [name for name in config.fourier_labels if name in labels]
    if expanded:
        columns = values[:, [labels.index(name) for name in expanded]]
        low, high = columns[train_index].min(axis=0), columns[train_index].max(axis=0)
        fraction = torch.as_tensor((columns - low) / np.maximum(high - low, 1e-12))
        scaled_labels = np.concatenate(
            [scaled_labels, fourier_features(fraction, config.fourier_frequencies).numpy().astype(np.float32)], axis=1)
    flux = dataset.spectra.astype(np.float32)
    offset, scale = flux_scaling(flux[train_index], "standard")  # as the disentangler's fast preset
    flux_offset, flux_scale = offset.astype(np.float32), scale.astype(np.float32)
    scaled_flux = (flux - flux_offset) / flux_scale

    decoder = mlp([scaled_labels.shape[1], *config.hidden, dataset.n_pixels], config.activation)
    task = DecoderFitTask(decoder, config.learning_rate)
    settings = LoopSettings(epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
                            device=config.device, lr_schedule=config.lr_schedule)

    def arrays(index):
        return {"inputs": scaled_labels[index], "target": scaled_flux[index]}

    history = train(task, arrays(train_index), arrays(val_index) if len(val_index) else None, settings)
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
