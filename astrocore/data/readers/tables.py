"""Generic tables of spectra: a FITS table with a 2-d ``FLUX`` column, or a CSV whose numeric
column names are wavelengths in Angstrom."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..dataset import DataError, Dataset
from .common import (_FITS_SUFFIXES, _ID_KEYS, _TABLE_SUFFIXES, BAD_PIXEL_ERROR, _check_file, _count, _dataset, _fail,
                     _header_wavelength, _label_table, _load_dataset, _open_fits, _provenance, _sanity_wavelength, _sniff,
                     _to_angstrom)
from . import limits
from .limits import guard
from .gandalf import _ERROR_NAMES, _FLUX_NAMES, _IVAR_NAMES, _LOGWAVE_NAMES, _WAVE_NAMES


def _find(names, candidates):
    lookup = {str(n).lower(): n for n in names}
    for candidate in candidates:
        if candidate in lookup:
            return lookup[candidate]
    return None


def _ivar_to_error(ivar: np.ndarray) -> np.ndarray:
    ivar = np.asarray(ivar, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        errors = np.where(ivar > 0, 1.0 / np.sqrt(np.where(ivar > 0, ivar, 1.0)), BAD_PIXEL_ERROR)
    return errors


def _wavelength_argument(path, wavelength, n_pix):
    if wavelength is None:
        return None
    wl = _sanity_wavelength(path, wavelength)
    if wl.size != n_pix:
        raise _fail(path, f"the wavelength argument has {wl.size} values but the spectra have "
                          f"{n_pix} pixels.")
    return wl


def _read_fits_table(path: Path, wavelength=None) -> Dataset:
    with _open_fits(path) as hdul:
        names = [h.name.upper() for h in hdul]
        if "WAVELENGTH" in names and "LABELS" in names and hdul[0].header.get("ACORE"):
            pass  # an astrocore Dataset file; handled below, outside the with-block
        else:
            return _parse_fits_table(path, hdul, wavelength)
    return _load_dataset(path)


def _extension_wavelength(hdul, path, n_pix):
    for hdu in hdul:
        if hdu.name.upper() not in ("WAVELENGTH", "WAVE", "LAMBDA", "LOGLAM"):
            continue
        if hdu.is_image and hdu.data is not None:
            values = np.asarray(hdu.data, dtype=np.float64).ravel()
            unit = hdu.header.get("BUNIT") or hdu.header.get("CUNIT1")
        elif isinstance(hdu, fits.BinTableHDU) and hdu.data is not None and hdu.columns:
            column = hdu.columns[0]
            values = np.asarray(hdu.data[column.name], dtype=np.float64).ravel()
            unit = column.unit
        else:
            continue
        if hdu.name.upper() == "LOGLAM":
            values, unit = 10.0 ** values, None
        values = _to_angstrom(values, unit, path)
        if values.size != n_pix:
            raise _fail(path, f"the {hdu.name} extension has {values.size} values but the "
                              f"spectra have {n_pix} pixels.")
        return values
    return None


def _parse_fits_table(path: Path, hdul, wavelength) -> Dataset:
    provenance = _provenance(path, "table", format="fits")
    # --- layout A / B: a binary table with a FLUX column
    for hdu in hdul:
        if not isinstance(hdu, fits.BinTableHDU) or hdu.data is None:
            continue
        colnames = hdu.columns.names
        flux_name = _find(colnames, _FLUX_NAMES)
        if flux_name is None:
            continue
        data = hdu.data
        if len(data) == 0:
            raise _fail(path, f"the table in HDU {hdu.name or hdul.index_of(hdu)} has no rows.")
        try:
            flux = np.asarray(data[flux_name], dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise _fail(path, f"column {flux_name} is not numeric: {error}") from error
        wave_name = _find(colnames, _WAVE_NAMES)
        logwave_name = _find(colnames, _LOGWAVE_NAMES)
        error_name = _find(colnames, _ERROR_NAMES)
        ivar_name = _find(colnames, _IVAR_NAMES)
        used = {flux_name, wave_name, logwave_name, error_name, ivar_name}
        if flux.ndim == 1:
            # layout B: one spectrum, one row per pixel
            if wave_name is None and logwave_name is None and wavelength is None:
                raise _fail(path, f"column {flux_name} holds one value per row (one spectrum, "
                                  "rows = pixels) but there is no WAVELENGTH / WAVE / LOGLAM "
                                  "column; pass wavelength=<Angstrom array>.")
            if wave_name is not None:
                wl = _to_angstrom(data[wave_name], hdu.columns[wave_name].unit, path)
            elif logwave_name is not None:
                wl = 10.0 ** np.asarray(data[logwave_name], dtype=np.float64)
            else:
                wl = wavelength
            errors = None
            if error_name is not None:
                errors = np.asarray(data[error_name], dtype=np.float64)[None, :]
            elif ivar_name is not None:
                errors = _ivar_to_error(data[ivar_name])[None, :]
            table = Table()
            header = hdul[0].header
            star = next((str(header[k]).strip() for k in _ID_KEYS if k in header), path.stem)
            table["id"] = [star]
            provenance["layout"] = "table rows = pixels (one spectrum)"
            return _dataset(path, flux[None, :], _sanity_wavelength(path, wl), table, errors,
                            provenance)
        if flux.ndim != 2:
            raise _fail(path, f"column {flux_name} has per-row shape {flux.shape[1:]}; expected "
                              "a 1-d spectrum per row.")
        n, n_pix = flux.shape
        wl = None
        for name, is_log in ((wave_name, False), (logwave_name, True)):
            if name is None:
                continue
            values = np.asarray(data[name], dtype=np.float64)
            if values.ndim == 2:
                if not np.allclose(values, values[0], rtol=0, atol=1e-6 * np.abs(values[0]).max()):
                    raise _fail(path, f"column {name} differs between rows; every spectrum must "
                                      "share one wavelength axis (resample them first).")
                values = values[0]
            wl = 10.0 ** values if is_log else _to_angstrom(values, hdu.columns[name].unit, path)
            break
        if wl is None:
            wl = _extension_wavelength(hdul, path, n_pix)
        if wl is None:
            wl = _wavelength_argument(path, wavelength, n_pix)
        if wl is None:
            raise _fail(path, f"column {flux_name} holds {n} spectra of {n_pix} pixels but there "
                              "is no wavelength: add a WAVELENGTH column or extension, or pass "
                              "wavelength=<Angstrom array>.")
        errors = None
        if error_name is not None:
            errors = np.asarray(data[error_name], dtype=np.float64)
        elif ivar_name is not None:
            errors = _ivar_to_error(data[ivar_name])
        columns = {}
        for column in hdu.columns:
            if column.name in used:
                continue
            values = np.asarray(data[column.name])
            if values.ndim == 1:
                columns[column.name] = values
        table = _label_table(columns, n)
        if "id" not in table.colnames:
            table["id"] = np.arange(n)
        provenance["layout"] = "binary table with a 2-d flux column"
        return _dataset(path, flux, _sanity_wavelength(path, wl), table, errors, provenance)

    # --- layout C: an image of spectra
    image = next((h for h in hdul if h.is_image and h.data is not None and np.ndim(h.data) in (1, 2)
                  and h.name.upper() not in ("WAVELENGTH", "WAVE", "LAMBDA", "LOGLAM", "ERROR",
                                             "ERRORS", "ERR", "SIGMA", "IVAR", "MASK")), None)
    if image is None:
        raise _fail(path, "no spectra found: expected a binary table with a FLUX column (one "
                          "spectrum per row) or an image HDU (n_spectra, n_pixels) with a "
                          f"WAVELENGTH extension. HDUs: {[h.name for h in hdul]}.")
    try:
        flux = np.atleast_2d(np.asarray(image.data, dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise _fail(path, f"image {image.name} is not numeric: {error}") from error
    n, n_pix = flux.shape
    wl = _extension_wavelength(hdul, path, n_pix)
    if wl is None:
        wl = _header_wavelength(image.header, n_pix, path)
    if wl is None:
        wl = _wavelength_argument(path, wavelength, n_pix)
    if wl is None:
        raise _fail(path, f"image {image.name} holds {n} spectra of {n_pix} pixels but there is "
                          "no wavelength: add a WAVELENGTH extension or CRVAL1/CDELT1 keywords, "
                          "or pass wavelength=<Angstrom array>.")
    errors = None
    for hdu in hdul:
        if hdu.is_image and hdu.data is not None and hdu.name.upper() in (
                "ERROR", "ERRORS", "ERR", "SIGMA", "IVAR"):
            values = np.atleast_2d(np.asarray(hdu.data, dtype=np.float64))
            if values.shape != flux.shape:
                raise _fail(path, f"the {hdu.name} extension has shape {values.shape} but the "
                                  f"spectra have {flux.shape}.")
            errors = _ivar_to_error(values) if hdu.name.upper() == "IVAR" else values
            break
    table = Table()
    for hdu in hdul:
        if isinstance(hdu, fits.BinTableHDU) and hdu.data is not None and len(hdu.data) == n:
            columns = {c.name: np.asarray(hdu.data[c.name]) for c in hdu.columns
                       if np.ndim(hdu.data[c.name]) == 1}
            table = _label_table(columns, n)
            break
    if "id" not in table.colnames:
        header = hdul[0].header
        star = next((str(header[k]).strip() for k in _ID_KEYS if k in header), None)
        table["id"] = [star] if (star and n == 1) else np.arange(n)
    provenance["layout"] = f"image HDU {image.name or 0} + wavelength"
    return _dataset(path, flux, _sanity_wavelength(path, wl), table, errors, provenance)


_NUMBER = r"([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?\d+)?)"
_FLUX_COLUMN = re.compile(r"^(?:flux|f|spec|pix)?[_\-\[\(]?\s*" + _NUMBER + r"\s*[\]\)]?$",
                          re.IGNORECASE)
_ERR_COLUMN = re.compile(r"^(err|error|sigma|e|flux_err|ivar)[_\-\[\(]\s*" + _NUMBER
                         + r"\s*[\]\)]?$", re.IGNORECASE)


def _read_text_table(path: Path, wavelength=None) -> Dataset:
    import pandas as pd

    suffix = path.suffix.lower()
    limits.check_text(path, str(path))
    try:
        if suffix == ".ecsv":
            frame = Table.read(path, format="ascii.ecsv").to_pandas()
        else:
            sep = {".csv": ",", ".tsv": "\t"}.get(suffix)
            if sep is None:  # .txt / .dat / .asc: comma if the header has one, else whitespace
                with open(path, encoding="utf-8", errors="replace") as handle:
                    first = next((line for line in handle
                                  if line.strip() and not line.startswith("#")), "")
                sep = "," if "," in first else ("\t" if "\t" in first else r"\s+")
            frame = pd.read_csv(path, sep=sep, comment="#")
    except pd.errors.EmptyDataError as error:
        raise _fail(path, "is empty: no header line with column names.") from error
    except Exception as error:  # parser errors, bad encodings, csv.Error, ...
        raise _fail(path, f"could not be read as a CSV table ({type(error).__name__}: "
                          f"{error}).") from error
    if frame.shape[1] == 0:
        raise _fail(path, "has no columns.")
    if len(frame) == 0:
        raise _fail(path, f"has a header ({frame.shape[1]} columns) but no data rows.")
    frame.columns = [str(c).strip() for c in frame.columns]
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    flux_columns, error_columns = {}, {}
    for column in frame.columns:
        error_match = _ERR_COLUMN.match(column)
        if error_match:
            error_columns[float(error_match.group(2))] = (column, error_match.group(1).lower())
            continue
        match = _FLUX_COLUMN.match(column)
        if match:
            key = float(match.group(1))
            if key in flux_columns:
                raise _fail(path, f"columns {flux_columns[key]!r} and {column!r} name the same "
                                  "wavelength; every flux column needs its own wavelength.")
            flux_columns[key] = column
    provenance = _provenance(path, "table", format="csv")
    if not flux_columns:
        wave_column = _find(frame.columns, _WAVE_NAMES)
        log_column = _find(frame.columns, _LOGWAVE_NAMES)
        flux_column = _find(frame.columns, _FLUX_NAMES)
        if flux_column is not None and (wave_column or log_column or wavelength is not None):
            # long layout: one spectrum, one row per pixel
            try:
                flux = frame[flux_column].to_numpy(dtype=np.float64)
                if wave_column is not None:
                    wl = frame[wave_column].to_numpy(dtype=np.float64)
                elif log_column is not None:
                    wl = 10.0 ** frame[log_column].to_numpy(dtype=np.float64)
                else:
                    wl = wavelength
            except (TypeError, ValueError) as error:
                raise _fail(path, f"non-numeric values in the {flux_column} or wavelength "
                                  f"column: {error}") from error
            errors = None
            error_column = _find(frame.columns, _ERROR_NAMES)
            ivar_column = _find(frame.columns, _IVAR_NAMES)
            try:
                if error_column is not None:
                    errors = frame[error_column].to_numpy(dtype=np.float64)[None, :]
                elif ivar_column is not None:
                    errors = _ivar_to_error(frame[ivar_column].to_numpy())[None, :]
            except (TypeError, ValueError) as error:
                raise _fail(path, f"non-numeric values in the {error_column or ivar_column} column: "
                                  f"{str(error)[:80]}") from error
            table = Table()
            table["id"] = [path.stem]
            provenance["layout"] = "long: rows = pixels, columns wavelength / flux [/ error]"
            return _dataset(path, flux[None, :], _sanity_wavelength(path, wl), table, errors,
                            provenance)
        if not numeric:
            raise _fail(path, f"has no numeric columns (columns: {list(frame.columns)[:10]}); "
                              "expected flux columns named by wavelength in Angstrom (e.g. "
                              "'15100.25' or 'flux_15100.25') plus label columns.")
        raise _fail(path, "no flux columns: expected columns named by wavelength in Angstrom "
                          "(e.g. '15100.25' or 'flux_15100.25'), or a long table with "
                          f"'wavelength' and 'flux' columns; got {list(frame.columns)[:10]}.")
    keys = sorted(flux_columns)
    ordered = [flux_columns[k] for k in keys]
    block = frame[ordered].apply(pd.to_numeric, errors="coerce")
    bad_cells = block.isna() & frame[ordered].notna()
    if bad_cells.to_numpy().any():
        row, col = np.argwhere(bad_cells.to_numpy())[0]
        raise _fail(path, f"non-numeric flux value {frame[ordered[col]].iloc[row]!r} in column "
                          f"{ordered[col]!r}, data row {row + 1}.")
    flux = block.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(flux)):
        rows = np.flatnonzero(~np.isfinite(flux).all(axis=1))
        raise _fail(path, f"missing / NaN flux values in {_count(rows.size)} (first: data row "
                          f"{rows[0] + 1}); fill or drop them first.")
    if wavelength is not None:
        wl = _wavelength_argument(path, wavelength, len(keys))
        source = "argument"
    else:
        wl = np.asarray(keys, dtype=np.float64)
        if np.allclose(wl, np.arange(wl.size)) or np.allclose(wl, np.arange(1, wl.size + 1)):
            raise _fail(path, f"the {wl.size} flux columns are named {ordered[0]}..{ordered[-1]}, "
                              "which look like pixel indices, not wavelengths; pass "
                              "wavelength=<Angstrom array>.")
        if keys[0] < 50 < keys[-1]:
            raise _fail(path, f"column names run from {ordered[0]!r} to {ordered[-1]!r}, which "
                              "are not one wavelength axis in Angstrom; does the file lack a "
                              "header line (column names)?")
        source = "column names"
    errors = None
    if error_columns:
        missing = [k for k in keys if k not in error_columns]
        if missing:
            raise _fail(path, f"{len(missing)} flux columns have no matching error column "
                              f"(e.g. wavelength {missing[0]}); give an error column for every "
                              "flux column or none.")
        errors = frame[[error_columns[k][0] for k in keys]].apply(
            pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        if error_columns[keys[0]][1] == "ivar":
            errors = _ivar_to_error(errors)
    used = set(ordered) | {v[0] for v in error_columns.values()}
    label_columns = {}
    for column in frame.columns:
        if column in used:
            continue
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            label_columns[column] = values.to_numpy()
        else:
            label_columns[column] = values.astype(str).to_numpy().astype(str)
    table = _label_table(label_columns, len(frame))
    if "id" not in table.colnames:
        table["id"] = np.arange(len(frame))
        table = table[["id"] + [c for c in table.colnames if c != "id"]]
    provenance.update(layout="wide: one row per spectrum, flux columns named by wavelength",
                      wavelength_source=source)
    return _dataset(path, flux, wl, table, errors, provenance)


@guard
def read_table(path, wavelength=None) -> Dataset:
    """Read spectra from a generic FITS or CSV table.

    Accepted FITS layouts (first match wins):

    1. a binary table with a FLUX (or SPECTRA / SPECTRUM / SPEC) column holding one spectrum per
       row (2-d), an optional WAVELENGTH / WAVE / LAMBDA (or LOGLAM, log10 Angstrom) column -
       per row (identical rows) or a WAVELENGTH extension (image or one-column table) - an
       optional ERROR / ERR / SIGMA / FLUX_ERR or IVAR column; every scalar column is a label
       (Teff -> teff, [Fe/H] / M_H -> feh, ...);
    2. a binary table with a scalar FLUX column and a WAVELENGTH / LOGLAM column: one spectrum,
       one row per pixel (SDSS-like);
    3. an image HDU (n_spectra, n_pixels) or (n_pixels,) with a WAVELENGTH extension or
       CRVAL1 / CDELT1 (/ CRPIX1, CTYPE1) keywords, optional ERROR(S) / IVAR image and a
       binary table of labels with one row per spectrum.

    Wavelength columns / extensions with a length unit (nm, um) are converted to Angstrom.

    Accepted CSV (``.csv``, ``.tsv``, ``.txt``, ``.dat``, ``.ecsv``) layouts:

    1. wide: one row per spectrum; flux columns named by their wavelength in Angstrom
       (``15100.25``) or ``flux_<wavelength>``, optional error columns ``err_<wavelength>`` /
       ``error_<wavelength>`` / ``sigma_<wavelength>`` (or ``ivar_<wavelength>``); all other
       columns are labels;
    2. long: one spectrum, one row per pixel, columns ``wavelength`` (or ``wave`` / ``lambda``)
       and ``flux``, optional ``error`` / ``ivar``.

    ``wavelength`` (Angstrom) is used when the file has none, and overrides wavelength-named
    columns in the wide CSV layout (then the columns may be named by pixel index).
    """
    path = _check_file(path, "a FITS or CSV table of spectra")
    kind = _sniff(path)
    name = path.name.lower()
    if kind in ("fits",) or (kind == "gzip" and name.endswith(_FITS_SUFFIXES)):
        return _read_fits_table(path, wavelength)
    if kind in ("npz", "npy", "gzip"):
        raise _fail(path, f"is a {kind} file, not a FITS or CSV table; use read_spectra.")
    if name.endswith(_FITS_SUFFIXES):
        raise _fail(path, "has a FITS extension but is not a FITS file (no 'SIMPLE  =' card).")
    if not name.endswith(_TABLE_SUFFIXES):
        raise _fail(path, f"unrecognised file type {path.suffix or '(no extension)'!r}: "
                          f"tables must be FITS or text ({', '.join(_TABLE_SUFFIXES)}).")
    return _read_text_table(path, wavelength)


def write_table(dataset: Dataset, path) -> Path:
    """Write ``dataset`` as a table :func:`read_table` reads back.

    ``.fits``: a binary table (FLUX 2-d column, ERROR column when present, one column per
    label) plus a WAVELENGTH image extension (Angstrom). ``.csv``: the wide layout with
    ``flux_<wavelength>`` (and ``err_<wavelength>``) columns, labels first.
    """
    if not isinstance(dataset, Dataset):
        raise DataError(f"write_table needs a Dataset; got {type(dataset).__name__}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    if name.endswith((".fits", ".fit")):
        table = dataset.labels.copy()
        table["FLUX"] = dataset.spectra
        if dataset.errors is not None:
            table["ERROR"] = dataset.errors
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spectra_hdu = fits.BinTableHDU(table, name="SPECTRA")
        hdus = fits.HDUList([fits.PrimaryHDU(), spectra_hdu,
                             fits.ImageHDU(dataset.wavelength, name="WAVELENGTH")])
        hdus[2].header["BUNIT"] = "Angstrom"
        with warnings.catch_warnings():  # 'dex' is not a FITS unit; readers re-attach it
            warnings.simplefilter("ignore")
            hdus.writeto(path, overwrite=True)
        return path
    if name.endswith(".csv"):
        import pandas as pd

        keys = [repr(float(w)) for w in dataset.wavelength]
        parts = [dataset.labels.to_pandas(index=False)]
        parts.append(pd.DataFrame(dataset.spectra, columns=[f"flux_{k}" for k in keys]))
        if dataset.errors is not None:
            parts.append(pd.DataFrame(dataset.errors, columns=[f"err_{k}" for k in keys]))
        pd.concat(parts, axis=1).to_csv(path, index=False)
        return path
    raise DataError(f"{path}: write_table writes .fits or .csv files.")
