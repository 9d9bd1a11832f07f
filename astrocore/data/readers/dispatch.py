"""Reading any supported file by its content (:func:`read_spectra`), and checking or resampling a
dataset against a model's wavelength axis."""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np

from ..dataset import DataError, Dataset
from ..simulators.apogee_grid import APOGEE_N_PIXELS, apogee_wavelength
from .apogee import read_apogee, to_apogee_grid
from .common import (_FITS_SUFFIXES, _TABLE_SUFFIXES, BAD_PIXEL_ERROR, _check_file, _load_dataset, _looks_like_apogee,
                     _open_fits, _sniff)
from .limits import guard
from .gandalf import read_gandalf_folder, read_npz
from .tables import read_table


# --------------------------------------------------------------------------- dispatch
def _call(reader, path, kwargs: dict, fmt: str) -> Dataset:
    accepted = inspect.signature(reader).parameters
    unknown = [k for k, v in kwargs.items() if k not in accepted and v is not None]
    if unknown:
        raise DataError(f"{path}: option(s) {unknown} do not apply to {fmt}; "
                        f"{reader.__name__} accepts {[p for p in accepted if p != 'path']}.")
    return reader(path, **{k: v for k, v in kwargs.items() if k in accepted})


@guard
def read_spectra(path, **kwargs) -> Dataset:
    """Read spectra from ``path``, choosing the reader from the content.

    * folder with ``spectra.npz`` -> :meth:`Dataset.load`; folder with ``X.npy`` ->
      :func:`read_gandalf_folder`;
    * FITS: an astrocore Dataset file (WAVELENGTH + LABELS extensions) -> :meth:`Dataset.load`;
      APOGEE (file name apStar / aspcapStar, APOGEE header keywords, or an HDU1 image on the
      APOGEE log grid) -> :func:`read_apogee`; otherwise :func:`read_table`;
    * ``.npz`` -> :func:`read_npz` (The Payne's real spectra files);
    * ``.csv`` / ``.tsv`` / ``.txt`` / ``.ecsv`` -> :func:`read_table`.

    ``kwargs`` go to the chosen reader (e.g. ``wavelength=`` for GANDALF / tables / npz,
    ``normalize=``, ``rows=``, ``trim_gaps=`` for APOGEE); an option the reader does not take
    raises :class:`DataError` (``None`` values are ignored).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder.")
    if path.is_dir():
        if (path / "spectra.npz").exists():
            if any(v is not None for v in kwargs.values()):
                raise DataError(f"{path}: an astrocore dataset folder takes no options; got "
                                f"{sorted(kwargs)}.")
            return _load_dataset(path)
        if (path / "X.npy").exists():
            return _call(read_gandalf_folder, path, kwargs, "a GANDALF folder")
        raise DataError(f"{path} is a folder without spectra.npz (astrocore dataset) or X.npy "
                        f"(GANDALF); found {sorted(p.name for p in path.iterdir())[:10]}.")
    _check_file(path, "spectra")
    kind = _sniff(path)
    if kind in ("fits", "gzip") and (kind == "fits" or path.name.lower().endswith(_FITS_SUFFIXES)):
        with _open_fits(path) as hdul:
            names = [h.name.upper() for h in hdul]
            is_dataset = "WAVELENGTH" in names and "LABELS" in names
            is_apogee = not is_dataset and _looks_like_apogee(hdul, path)
        if is_dataset:
            if any(v is not None for v in kwargs.values()):
                raise DataError(f"{path}: an astrocore dataset file takes no options; got "
                                f"{sorted(kwargs)}.")
            return _load_dataset(path)
        if is_apogee:
            return _call(read_apogee, path, kwargs, "an APOGEE FITS file")
        return _call(read_table, path, kwargs, "a FITS table")
    if kind == "npz":
        return _call(read_npz, path, kwargs, "a .npz file")
    if kind == "npy":
        raise DataError(f"{path} is a single .npy array without wavelength or labels; put it in "
                        "a GANDALF folder (X.npy + wavelength.npy) or a .npz with 'spectra' and "
                        "'wavelength' keys.")
    if kind == "gzip":
        raise DataError(f"{path} is gzip-compressed but not a .fits.gz file; decompress it first.")
    if path.name.lower().endswith(_FITS_SUFFIXES):
        raise DataError(f"{path} has a FITS extension but is not a FITS file "
                        "(no 'SIMPLE  =' card).")
    if not path.name.lower().endswith(_TABLE_SUFFIXES):
        raise DataError(
            f"{path}: unrecognised file type {path.suffix or '(no extension)'!r}; astrocore reads "
            "FITS (APOGEE apStar / aspcapStar, tables, astrocore datasets), .npz spectra, "
            f"text tables ({', '.join(_TABLE_SUFFIXES)}) and folders (GANDALF X.npy or an "
            "astrocore dataset)."
        )
    return _call(read_table, path, kwargs, "a CSV table")


# --------------------------------------------------------------------------- compatibility
def _describe(wavelength: np.ndarray) -> str:
    return f"{wavelength.size} pixels over {wavelength[0]:.2f}-{wavelength[-1]:.2f} Angstrom"


def check_compatible(dataset: Dataset, wavelength, tolerance_aa: float = 0.01) -> None:
    """Raise :class:`DataError` unless ``dataset`` is on the model wavelength axis.

    The axes match when they have the same number of pixels and every pixel is within
    ``tolerance_aa`` Angstrom. The message says how to fix a mismatch: :func:`to_apogee_grid` for
    full-grid APOGEE spectra, :func:`resample_to` when the data cover the model's range.
    """
    model = np.asarray(wavelength, dtype=np.float64).ravel()
    data = np.asarray(dataset.wavelength, dtype=np.float64)
    if model.size == data.size and np.all(np.abs(model - data) <= tolerance_aa):
        return
    message = (f"the spectra have {_describe(data)} but the model expects {_describe(model)}")
    if model.size == data.size:
        message += f" (max offset {np.max(np.abs(model - data)):.4f} Angstrom > {tolerance_aa})"
    hints = []
    if model.size == APOGEE_N_PIXELS and np.allclose(model, apogee_wavelength(), atol=0.01,
                                                     rtol=0):
        try:
            to_apogee_grid(dataset.subset(np.arange(min(1, len(dataset)))), tolerance_aa)
            hints.append("they are on the full APOGEE grid: use to_apogee_grid(dataset)")
        except DataError:
            pass
    if data[0] <= model[0] + tolerance_aa and data[-1] >= model[-1] - tolerance_aa:
        hints.append("the data cover the model's range: resample_to(dataset, wavelength) "
                     "interpolates them linearly")
    else:
        hints.append("the data do not cover the model's wavelength range")
    source = dataset.provenance.get("file")
    prefix = f"{source}: " if source else ""
    raise DataError(prefix + message + "; " + "; ".join(hints) + ".")


def resample_to(dataset: Dataset, wavelength, tolerance_aa: float = 0.01,
                fill_gaps: bool = False) -> Dataset:
    """Linearly interpolate ``dataset`` onto ``wavelength`` (Angstrom), flagged in provenance.

    The data must cover the target range (within ``tolerance_aa``). Target pixels falling inside
    a gap of the data's coverage (a step more than 5x the median) raise :class:`DataError`, unless
    ``fill_gaps=True``, which sets them to flux 1.0 with error :data:`BAD_PIXEL_ERROR`. Errors are
    interpolated the same way (an approximation: interpolation correlates neighbouring pixels).
    """
    target = np.asarray(wavelength, dtype=np.float64).ravel()
    if target.size == 0 or not np.all(np.isfinite(target)) or np.any(np.diff(target) <= 0):
        raise DataError("resample_to: the target wavelength must be finite and strictly "
                        "increasing (Angstrom).")
    source = dataset.wavelength
    if source[0] > target[0] + tolerance_aa or source[-1] < target[-1] - tolerance_aa:
        raise DataError(
            f"cannot resample: the spectra have {_describe(source)} but the model expects "
            f"{_describe(target)}; the data must cover the model's whole range."
        )
    clipped = np.clip(target, source[0], source[-1])
    right = np.clip(np.searchsorted(source, clipped, side="right"), 1, source.size - 1)
    left = right - 1
    step = np.diff(source)
    in_gap = np.zeros(target.size, dtype=bool)
    if source.size > 2:
        wide = step > 5 * np.median(step)
        in_gap = wide[left] & (clipped > source[left]) & (clipped < source[right])
    if in_gap.any() and not fill_gaps:
        raise DataError(
            f"cannot resample: {int(in_gap.sum())} model pixels fall inside gaps of the data's "
            f"wavelength coverage ({_describe(source)}); pass fill_gaps=True to set them to "
            "continuum (1.0) with a huge error."
        )
    frac = (clipped - source[left]) / (source[right] - source[left])
    spectra = dataset.spectra[:, left] * (1 - frac) + dataset.spectra[:, right] * frac
    errors = None
    if dataset.errors is not None:
        errors = dataset.errors[:, left] * (1 - frac) + dataset.errors[:, right] * frac
    if in_gap.any():
        spectra[:, in_gap] = 1.0
        if errors is None:
            warnings.warn("gap pixels were filled with 1.0 but the dataset has no errors to "
                          "down-weight them.")
        else:
            errors[:, in_gap] = BAD_PIXEL_ERROR
    provenance = dict(dataset.provenance)
    provenance["resampled"] = {
        "method": "linear interpolation", "from": _describe(source), "to": _describe(target),
        "gap_pixels_filled": int(in_gap.sum()),
    }
    return Dataset(spectra, target, dataset.labels.copy(), errors, provenance)
