"""A trained disentangler in physical units: encode, decode, generate; loaded without pickle."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...data import dataset_from_source
from ...data.dataset import DataError, Dataset
from ...runs import RunError, RunRecord, SavedRun
from ...training import load_modules
from .config import DisentanglerConfig
from .model import Disentangler, hidden_features


# ============================================================================ inference
class DisentanglerRun(SavedRun):
    """A trained disentangler: encode, decode and generate in physical units."""

    method = "disentangle"

    def __init__(self, record: RunRecord, model: Disentangler):
        self.record = record
        self.model = model.eval()
        self.config = model.config

    @property
    def wavelength(self) -> np.ndarray:
        return self.model.wavelength.numpy()

    @property
    def conditional(self) -> tuple[str, ...]:
        return self.config.conditional

    @property
    def training_range(self) -> dict[str, tuple[float, float]]:
        """Range of each conditional parameter seen in training (physical units)."""
        return {
            name: (float(self.model.cp_min[i]), float(self.model.cp_max[i]))
            for i, name in enumerate(self.conditional)
        }

    @classmethod
    def load(cls, path) -> "DisentanglerRun":
        """Rebuild the model from run.json + weights.safetensors (no pickle)."""
        record = RunRecord.read(path)
        if record.status != "done":
            raise RunError(f"Run {record.id} is {record.shown_status}; only finished runs can be loaded.")
        config = DisentanglerConfig.from_json(record.config)
        n_pixels = _n_pixels_in_weights(Path(path) / "weights.safetensors")
        model = Disentangler(n_pixels, config)
        load_modules(Path(path) / "weights.safetensors", {"model": model})
        return cls(record, model)

    def _conditional_array(self, conditional, n: int) -> np.ndarray:
        if isinstance(conditional, dict):
            conditional = np.stack([np.broadcast_to(np.asarray(conditional[name], dtype=np.float64), (n,))
                                    for name in self.conditional], axis=1)
        cp = np.asarray(conditional, dtype=np.float32)
        if cp.ndim == 1:
            cp = np.broadcast_to(cp, (n, cp.size))
        if cp.shape != (n, len(self.conditional)):
            raise DataError(
                f"Expected conditional parameters of shape ({n}, {len(self.conditional)}) for "
                f"{', '.join(self.conditional)}; got {cp.shape}."
            )
        return np.array(cp, dtype=np.float32)  # a writable copy (broadcast views are read-only)

    def check_spectra(self, spectra) -> np.ndarray:
        spectra = np.array(spectra, dtype=np.float32)
        if spectra.ndim == 1:
            spectra = spectra[None]
        if spectra.ndim != 2 or spectra.shape[1] != self.model.wavelength.numel():
            raise DataError(
                f"This model expects spectra of {self.model.wavelength.numel()} pixels over "
                f"{self.wavelength[0]:.1f}-{self.wavelength[-1]:.1f} Angstrom; got shape {spectra.shape}."
            )
        if not np.all(np.isfinite(spectra)):
            raise DataError("Spectra contain NaN or infinite flux.")
        return spectra

    @torch.no_grad()
    def encode(self, spectra, conditional, batch_size: int = 2048) -> np.ndarray:
        """Latent vectors (n, latent_dim) of ``spectra`` (n, n_pixels) at their conditional parameters."""
        spectra = self.check_spectra(spectra)
        cp = self._conditional_array(conditional, len(spectra))
        parts = [
            self.model.encode(torch.as_tensor(spectra[i:i + batch_size]), torch.as_tensor(cp[i:i + batch_size])).numpy()
            for i in range(0, len(spectra), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.config.latent_dim), np.float32)

    @torch.no_grad()
    def decode(self, latent, conditional, batch_size: int = 2048) -> np.ndarray:
        """Spectra (n, n_pixels), continuum-normalised flux, decoded from ``latent`` at ``conditional``."""
        latent = np.array(latent, dtype=np.float32)
        if latent.ndim == 1:
            latent = latent[None]
        if latent.shape[1] != self.config.latent_dim:
            raise DataError(f"Latent vectors must have {self.config.latent_dim} dimensions; got {latent.shape[1]}.")
        cp = self._conditional_array(conditional, len(latent))
        parts = [
            self.model.decode(torch.as_tensor(latent[i:i + batch_size]), torch.as_tensor(cp[i:i + batch_size])).numpy()
            for i in range(0, len(latent), batch_size)
        ]
        return np.concatenate(parts)

    def is_extrapolation(self, conditional) -> np.ndarray:
        """True where any conditional parameter lies outside the training range."""
        if isinstance(conditional, dict):
            n = max(np.size(value) for value in conditional.values())
        else:
            n = np.atleast_2d(np.asarray(conditional)).shape[0]
        cp = self._conditional_array(conditional, n)
        low, high = self.model.cp_min.numpy(), self.model.cp_max.numpy()
        return np.any((cp < low - 1e-6) | (cp > high + 1e-6), axis=1)

    def generate(self, spectrum, conditional_from, conditional_to) -> tuple[np.ndarray, np.ndarray]:
        """Re-render one or more stars at new conditional parameters.

        Encodes ``spectrum`` at ``conditional_from`` and decodes at each row of ``conditional_to``.
        Returns (spectra, extrapolation flags).
        """
        latent = self.encode(spectrum, conditional_from)
        target = np.atleast_2d(np.asarray(conditional_to, dtype=np.float32))
        latent = np.repeat(latent, len(target), axis=0) if len(latent) == 1 else latent
        return self.decode(latent, target), self.is_extrapolation(target)


    # ------------------------------------------------------------------ the explorer's view
    def dataset(self) -> Dataset:
        """The spectra the run was trained on, rebuilt from ``run.json``'s data source."""
        return dataset_from_source(self.record.data)

    def feature_width(self) -> int:
        """Width of the encoder's last hidden layer (the dimension of h): for a ``cp-polynomial``
        encoder, its number of principal components."""
        if self.config.encoder == "cp-polynomial":
            return int(self.config.encoder_components)
        hidden = tuple(self.config.encoder_hidden)
        if not hidden:
            raise DataError("This model's encoder has no hidden layer, so there are no encoder features h.")
        return int(hidden[-1])

    def encoder_features(self, spectra, conditional, batch_size: int = 1024) -> np.ndarray:
        """Activations of the encoder's last hidden layer (n, width) for ``spectra`` (n, n_pixels) at
        their ``conditional`` parameters (physical units, an array (n, n_cp)).

        Mirrors :meth:`encode` but stops before the encoder's last linear layer, so the latent z is
        that layer (plus the latent activation) applied to h.
        """
        spectra = self.check_spectra(spectra)
        cp = self._conditional_array(conditional, len(spectra))
        device = next(self.model.parameters()).device
        parts = []
        with torch.no_grad():
            for start in range(0, len(spectra), batch_size):
                flux = torch.as_tensor(spectra[start:start + batch_size], device=device)
                cp_batch = torch.as_tensor(cp[start:start + batch_size], device=device)
                scaled = torch.cat([self.model.scale_flux(flux), self.model.cp_inputs(cp_batch)], dim=1)
                parts.append(hidden_features(self.model.encoder, scaled).float().cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros((0, self.feature_width()), np.float32)

    def representation(self, name: str, dataset: Dataset | None = None) -> np.ndarray:
        """``z`` (latent), ``X`` (input spectra) or ``h`` (encoder features) per object of ``dataset``
        (default: the run's own data, whose latents are stored with the run)."""
        if name == "z" and dataset is None:
            return np.asarray(self.arrays()["latent"], np.float32)
        dataset = self.dataset() if dataset is None else dataset
        if name == "X":
            return np.asarray(dataset.spectra, np.float32)
        conditional = dataset.label_array(self.conditional)
        if name == "z":
            return self.encode(dataset.spectra, conditional)
        if name == "h":
            return self.encoder_features(dataset.spectra, conditional)
        raise DataError(f"A disentangling run offers the representations z, X and h; got {name!r}.")


def _n_pixels_in_weights(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.get_slice("model.wavelength").get_shape()[0]

