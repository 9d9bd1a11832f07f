"""GANDALF's folder format (``X.npy``, ``params.npy``, ``ids.npy``, ``axis_labels.npy``) and
``.npz`` files of spectra (The Payne's real-spectrum files)."""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..dataset import DataError, Dataset
from ..simulators.apogee_grid import APOGEE_N_PIXELS, apogee_wavelength
from .apogee import _NPZ_FLUX_KEYS, _NPZ_LABEL_RENAMES
from . import limits
from .common import (_GANDALF_NAMES, _GANDALF_ORDER, _check_file, _count, _dataset, _fail, _label_table, _provenance,
                     _sanity_wavelength)
from .limits import guard


@guard
def read_npz(path, wavelength=None) -> Dataset:
    """Read spectra from a ``.npz`` (read with ``allow_pickle=False``).

    Keys: ``spectra`` (n, n_pix) or ``spectrum`` (n_pix,) [also ``flux`` / ``X``], optional errors
    ``spec_errs`` / ``spec_err`` / ``errors`` / ``flux_err``, optional ``wavelength`` (Angstrom);
    every other 1-d array of length n becomes a label column (``snrs`` -> snr, ``vhelios`` ->
    vhelio, ``hjds`` -> hjd). The wavelength is, in order: the ``wavelength`` key, the
    ``wavelength`` argument, the APOGEE combined grid when there are 7214 pixels. ``id`` is the
    2MASS-style APOGEE id in the file name when present (``_visit<k>`` appended for several
    spectra), else the file stem.
    """
    path = _check_file(path, "a .npz file of spectra")
    arrays = limits.load_npz(path, str(path))
    if "w_array_0" in arrays:
        raise _fail(path, "is a Payne emulator, not spectra; use astrocore.data.payne."
                          "PayneEmulator.load or payne_grid.")
    flux_key = err_key = None
    for f_key, e_key in _NPZ_FLUX_KEYS:
        if f_key in arrays:
            flux_key = f_key
            err_key = e_key if e_key in arrays else None
            break
    if flux_key is None:
        raise _fail(path, f"no spectra: expected a key 'spectra' or 'spectrum' (with optional "
                          f"'spec_errs' / 'spec_err'); the file has {sorted(arrays)}.")
    flux = arrays[flux_key]
    if flux.dtype.kind not in "fiu":
        raise _fail(path, f"key {flux_key} has dtype {flux.dtype}; expected numbers.")
    if flux.ndim not in (1, 2):
        raise _fail(path, f"key {flux_key} has shape {flux.shape}; expected (n_pix,) or "
                          "(n, n_pix).")
    flux2 = np.atleast_2d(flux)
    n, n_pix = flux2.shape
    errors = None
    if err_key is not None:
        errors = np.atleast_2d(arrays[err_key])
        if errors.shape != flux2.shape:
            raise _fail(path, f"key {err_key} has shape {arrays[err_key].shape} but "
                              f"{flux_key} has {flux.shape}.")
    if not np.all(np.isfinite(flux2)):
        rows = np.flatnonzero(~np.isfinite(flux2).all(axis=1))
        raise _fail(path, f"NaN or infinite flux in {_count(rows.size)} (first: row "
                          f"{rows[0]}); mask or interpolate them first.")
    source = "file"
    if "wavelength" in arrays:
        wl = arrays["wavelength"]
    elif wavelength is not None:
        wl, source = wavelength, "argument"
    elif n_pix == APOGEE_N_PIXELS:
        wl, source = apogee_wavelength(), "APOGEE combined grid (7214 pixels)"
    else:
        raise _fail(path, f"the spectra have {n_pix} pixels and the file has no 'wavelength' "
                          "key; pass wavelength=<array in Angstrom> (only 7214-pixel APOGEE "
                          "spectra get a default axis).")
    wl = _sanity_wavelength(path, wl)
    if wl.size != n_pix:
        raise _fail(path, f"the wavelength axis has {wl.size} pixels but the spectra have "
                          f"{n_pix}.")
    match = re.search(r"2M\d{8}[+-]\d{7}", path.name)
    star = match.group(0) if match else path.stem
    columns = {}
    used = {flux_key, err_key, "wavelength"}
    for key, value in arrays.items():
        if key in used or value.ndim != 1 or value.shape[0] != n or n_pix == n:
            continue
        if value.dtype.kind in "fiubUS":
            columns[_NPZ_LABEL_RENAMES.get(key, key)] = value
    table = _label_table(columns, n)
    if "id" not in table.colnames:
        table["id"] = [star] if n == 1 else [f"{star}_visit{k}" for k in range(1, n + 1)]
        table = table[["id"] + [c for c in table.colnames if c != "id"]]
    if match and "apogee_id" not in table.colnames:
        table["apogee_id"] = [star] * n
    provenance = _provenance(path, "npz", keys=sorted(arrays), wavelength_source=source,
                             normalized=True)
    return _dataset(path, flux2, wl, table, errors, provenance)


# --------------------------------------------------------------------------- GANDALF
def _load_npy(path: Path):
    """A .npy of the folder: header checked before reading, never unpickled (see :func:`~.limits.load_npy`)."""
    if not path.is_file():
        raise _fail(path, "is not a file.")
    return limits.load_npy(path, str(path))


@guard
def read_gandalf_folder(path, wavelength=None) -> Dataset:
    """Read a GANDALF-format folder.

    Files: ``X.npy`` (n, n_pix) spectra; ``params.npy`` (n, n_params) labels; ``ids.npy`` (n,);
    ``axis_labels.npy``: in GANDALF's own layout the wavelength axis of X (n_pix numbers, Angstrom),
    in folders written by older astrocore versions the label names. Label names come from
    ``param_names.npy`` when present (``Teff``, ``logg``, ``[M/H]``, ``[alpha/Fe]`` -> teff, logg,
    feh, afe; others lower-cased), else GANDALF's order of its conditional parameters (Teff, log g,
    [M/H], [alpha/Fe]) for up to four columns. Optional ``wavelength.npy`` (Angstrom), ``errors.npy``
    / ``X_err.npy`` (n, n_pix) and ``provenance.json``. Without a wavelength axis in the folder the
    ``wavelength`` argument is required. Only ``X.npy`` is mandatory.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such folder (expected a GANDALF folder with X.npy).")
    if not path.is_dir():
        raise DataError(f"{path} is a file; a GANDALF dataset is a folder with X.npy, params.npy, "
                        "ids.npy, axis_labels.npy.")
    if not (path / "X.npy").exists():
        raise DataError(f"{path}: no X.npy; a GANDALF folder holds X.npy (spectra), params.npy, "
                        f"ids.npy, axis_labels.npy (found "
                        f"{sorted(p.name for p in path.iterdir())[:10]}).")
    spectra = _load_npy(path / "X.npy")
    if spectra.dtype.kind not in "fiu":
        raise _fail(path / "X.npy", f"has dtype {spectra.dtype}; expected numbers.")
    if spectra.ndim == 1:
        spectra = spectra[None, :]
    if spectra.ndim != 2 or spectra.shape[0] == 0:
        raise _fail(path / "X.npy", f"has shape {spectra.shape}; expected (n_spectra, n_pixels).")
    n, n_pix = spectra.shape
    if not np.all(np.isfinite(spectra)):
        rows = np.flatnonzero(~np.isfinite(spectra).all(axis=1))
        raise _fail(path / "X.npy", f"NaN or infinite flux in {_count(rows.size)} (first: "
                                    f"row {rows[0]}).")
    axis_labels = _load_npy(path / "axis_labels.npy").ravel() \
        if (path / "axis_labels.npy").exists() else None
    # GANDALF's axis_labels.npy is the wavelength axis; older astrocore folders kept label names there.
    axis_is_wavelength = axis_labels is not None and axis_labels.dtype.kind in "fiu" and axis_labels.size == n_pix
    if (path / "wavelength.npy").exists():
        wl = _load_npy(path / "wavelength.npy")
        source = "wavelength.npy"
    elif axis_is_wavelength:
        wl, source = axis_labels, "axis_labels.npy"
    elif wavelength is not None:
        wl, source = wavelength, "argument"
    else:
        raise DataError(
            f"{path}: no wavelength.npy in the GANDALF folder; pass the wavelength axis "
            f"(Angstrom, {n_pix} values) as read_gandalf_folder(path, wavelength=...) or "
            "read_spectra(path, wavelength=...), or save it as wavelength.npy in the folder."
        )
    wl = _sanity_wavelength(path / source if source != "argument" else path, wl)
    if wl.size != n_pix:
        raise _fail(path, f"the wavelength axis ({source}) has {wl.size} values but X.npy has "
                          f"{n_pix} pixels per spectrum.")
    columns = {}
    if (path / "params.npy").exists():
        params = _load_npy(path / "params.npy")
        if params.ndim == 1 and n == 1:
            params = params[None, :]
        elif params.ndim == 1:
            params = params[:, None]
        if params.ndim != 2 or params.shape[0] != n:
            raise _fail(path / "params.npy", f"has shape {params.shape}; expected ({n}, n_params) "
                                             "to match X.npy.")
        names_file = path / "param_names.npy"
        if names_file.exists() or (axis_labels is not None and not axis_is_wavelength):
            names_file = names_file if names_file.exists() else path / "axis_labels.npy"
            names = [str(x) for x in _load_npy(names_file).ravel()]
            if len(names) != params.shape[1]:
                raise _fail(names_file, f"has {len(names)} names {names} but params.npy has "
                                        f"{params.shape[1]} columns.")
        elif params.shape[1] <= len(_GANDALF_ORDER):
            names = list(_GANDALF_ORDER[:params.shape[1]])
        else:
            names = [f"param_{i}" for i in range(params.shape[1])]
        try:
            params = params.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise _fail(path / "params.npy", f"is not numeric: {error}") from error
        for i, name in enumerate(names):
            columns[name] = params[:, i]
    ids = None
    if (path / "ids.npy").exists():
        ids = _load_npy(path / "ids.npy").ravel()
        if ids.size != n:
            raise _fail(path / "ids.npy", f"has {ids.size} ids for {n} spectra.")
        if ids.dtype.kind == "O":
            ids = ids.astype(str)
    errors = None
    for name in ("errors.npy", "X_err.npy"):
        if (path / name).exists():
            errors = _load_npy(path / name)
            if np.atleast_2d(errors).shape != (n, n_pix):
                raise _fail(path / name, f"has shape {errors.shape}; expected ({n}, {n_pix}).")
            break
    table = Table()
    table["id"] = ids if ids is not None else np.arange(n)
    for column_name, values in _label_table(columns, n).items():
        table[column_name] = values
    provenance = {}
    if (path / "provenance.json").exists():
        try:
            if (path / "provenance.json").stat().st_size > 10 * 1024 * 1024:
                raise ValueError("too large")
            provenance = json.loads((path / "provenance.json").read_text())
            provenance = provenance if isinstance(provenance, dict) else {"file_provenance": provenance}
        except (ValueError, OSError, RecursionError):
            provenance = {}
    provenance = {**provenance, "reader": "gandalf_folder", "folder": str(path.resolve()),
                  "wavelength_source": source}
    provenance.setdefault("generator", "gandalf_folder")
    return _dataset(path, spectra, wl, table, errors, provenance)


def _atomic_save(array, target: Path):
    handle, tmp = tempfile.mkstemp(dir=target.parent, suffix=".npy.part")
    os.close(handle)
    try:
        with open(tmp, "wb") as stream:
            np.save(stream, array, allow_pickle=False)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_gandalf_folder(dataset: Dataset, path) -> Path:
    """Write ``dataset`` as a GANDALF folder (inverse of :func:`read_gandalf_folder`).

    Writes GANDALF's layout: X.npy (float32), params.npy (float64; every numeric, non-boolean label
    column except ``id``, the standard labels first in GANDALF's order Teff, log g, [M/H],
    [alpha/Fe]), axis_labels.npy (the wavelength axis, Angstrom), ids.npy (integers stay integers,
    anything else becomes strings); and two files GANDALF ignores: param_names.npy (teff, logg, feh,
    afe written as Teff, logg, [M/H], [alpha/Fe]) and
    errors.npy when present and provenance.json. Only these files are replaced in an existing
    folder; nothing is pickled.
    """
    if not isinstance(dataset, Dataset):
        raise DataError(f"write_gandalf_folder needs a Dataset; got {type(dataset).__name__}.")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path} is a file; write_gandalf_folder needs a folder path.")
    path.mkdir(parents=True, exist_ok=True)
    names, columns = [], []
    standard = [name for name in ("teff", "logg", "feh", "afe") if name in dataset.labels.colnames]
    for name in standard + [n for n in dataset.labels.colnames if n not in standard]:
        column = np.asarray(dataset.labels[name])
        if name == "id" or column.ndim != 1 or column.dtype.kind not in "fiu":
            continue
        names.append(_GANDALF_NAMES.get(name, name))
        columns.append(column.astype(np.float64))
    params = np.stack(columns, axis=1) if columns else np.zeros((len(dataset), 0))
    ids = np.asarray(dataset.labels["id"])
    if ids.dtype.kind not in "iu":
        ids = ids.astype(str)
    _atomic_save(np.asarray(dataset.spectra, dtype=np.float32), path / "X.npy")
    _atomic_save(params, path / "params.npy")
    _atomic_save(np.asarray(dataset.wavelength, dtype=np.float64), path / "axis_labels.npy")
    _atomic_save(np.asarray(names, dtype=str), path / "param_names.npy")
    _atomic_save(ids, path / "ids.npy")
    (path / "wavelength.npy").unlink(missing_ok=True)  # an older astrocore layout
    if dataset.errors is not None:
        _atomic_save(np.asarray(dataset.errors, dtype=np.float32), path / "errors.npy")
    elif (path / "errors.npy").exists():
        (path / "errors.npy").unlink()
    (path / "provenance.json").write_text(json.dumps(dataset.provenance, indent=2, default=str))
    return path


# --------------------------------------------------------------------------- generic tables
_FLUX_NAMES = ("flux", "spectra", "spectrum", "spec", "x")
_WAVE_NAMES = ("wavelength", "wave", "lambda", "wl", "lam", "wavelength_aa", "wave_aa")
_LOGWAVE_NAMES = ("loglam", "log_wave", "logwave", "loglambda", "log_lambda")
_ERROR_NAMES = ("error", "errors", "err", "sigma", "flux_err", "flux_error", "spec_err",
                "spec_errs", "uncertainty")
_IVAR_NAMES = ("ivar", "invvar", "inverse_variance", "flux_ivar")
