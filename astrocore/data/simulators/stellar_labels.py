"""Helpers every stellar simulator shares: label arrays, noise at a signal-to-noise, the
simulated Dataset with its provenance, and abundances scaled from [Fe/H] and [alpha/Fe]."""
from __future__ import annotations

import numpy as np

from ..dataset import DataError, Dataset
from .linelists import ALPHA_ELEMENTS, METALS


# ----------------------------------------------------------------------------- labels and noise
def label_values(labels, name) -> np.ndarray:
    """Column ``name`` of a labels dict or astropy Table as a finite float array (at least 1-d)."""

    try:
        values = labels[name]
    except (KeyError, IndexError, ValueError):
        names = labels.colnames if hasattr(labels, "colnames") else list(labels)
        raise DataError(f"labels need a '{name}' column; got {names}.") from None
    values = np.atleast_1d(np.asarray(values, dtype=float))
    if not np.all(np.isfinite(values)):
        raise DataError(f"label '{name}' contains NaN or infinite values.")
    return values


def label_arrays(labels, names) -> list[np.ndarray]:
    """Columns ``names`` of ``labels`` as float arrays of one common length (scalars broadcast)."""

    values = [label_values(labels, name) for name in names]
    n = max(v.size for v in values)
    for name, v in zip(names, values):
        if v.size not in (1, n):
            raise DataError(f"label '{name}' has {v.size} values but other labels have {n}.")
    return [np.broadcast_to(v, (n,)).astype(float) for v in values]


def add_noise(spectra: np.ndarray, snr: float, rng, chunk: int = 4096) -> np.ndarray:
    """Add Gaussian noise of sigma 1/snr (continuum units) in place, chunk by chunk (float32)."""
    for start in range(0, len(spectra), chunk):
        block = spectra[start:start + chunk]
        block += rng.standard_normal(block.shape, dtype=np.float32) / np.float32(snr)
    return spectra


def check_snr(snr):
    """``snr`` as a float, or None; anything else is a DataError."""
    if snr is not None and not (np.isfinite(snr) and snr > 0):
        raise DataError(f"snr must be a positive number or None; got {snr!r}.")
    return None if snr is None else float(snr)


def simulated_dataset(spectra: np.ndarray, wavelength: np.ndarray, table, generator: str, version: str,
                      seed: int, params: dict, snr, noise_rng):
    """The simulators' common ending: optional noise at ``snr`` (errors = 1/snr), provenance and
    the Dataset."""
    errors = None
    if snr is not None:
        spectra = add_noise(spectra, float(snr), noise_rng)
        errors = np.full_like(spectra, 1.0 / float(snr))
    provenance = {"generator": generator, "version": version, "seed": int(seed), "params": params,
                  "continuum_normalised": True}
    return Dataset(spectra, wavelength, table, errors, provenance)


# ----------------------------------------------------------------------------- abundances
def scaled_abundances(feh, afe, overrides=None) -> dict:
    """[X/H] of every metal: [Fe/H] for all, + [alpha/Fe] for the alpha elements, then overrides.

    ``overrides``: {element: [X/H] array} replaces individual elements (e.g. from [X/Fe] labels).
    """
    feh = np.asarray(feh, dtype=float)
    afe = np.broadcast_to(np.asarray(afe, dtype=float), feh.shape)
    xh = {el: feh + (afe if el in ALPHA_ELEMENTS else 0.0) for el in METALS}
    for el, value in (overrides or {}).items():
        xh[el] = np.broadcast_to(np.asarray(value, dtype=float), feh.shape)
    return xh
