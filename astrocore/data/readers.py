"""Readers of real spectra into :class:`~astrocore.data.dataset.Dataset`.

Entry point: :func:`read_spectra` looks at a path's *content* and dispatches to

* :meth:`Dataset.load` - an astrocore Dataset (``.fits`` with WAVELENGTH + LABELS extensions, or a
  folder with ``spectra.npz``);
* :func:`read_gandalf_folder` - a folder with ``X.npy`` (GANDALF layout);
* :func:`read_apogee` - an APOGEE ``aspcapStar`` / ``apStar`` FITS file;
* :func:`read_npz` - a ``.npz`` of spectra (The Payne's real-spectrum files: ``spectrum`` /
  ``spec_err`` or ``spectra`` / ``spec_errs``);
* :func:`read_table` - any other FITS or CSV table of spectra.

:func:`check_compatible` checks a dataset against a model's wavelength axis; :func:`resample_to`
and :func:`to_apogee_grid` bring data onto it. Every malformed input raises
:class:`~astrocore.data.dataset.DataError` with a message naming the file and the problem.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .dataset import DataError, Dataset
from .payne import (APOGEE_CHIPS, APOGEE_FULL_N_PIXELS, APOGEE_LOG_START, APOGEE_N_PIXELS,
                    CONTINUUM_METHOD, apogee_pixel_indices, apogee_wavelength,
                    continuum_normalise, file_sha256)

__all__ = [
    "BAD_PIXEL_ERROR", "read_spectra", "read_apogee", "read_gandalf_folder",
    "write_gandalf_folder", "read_table", "write_table", "read_npz", "check_compatible",
    "resample_to", "to_apogee_grid", "standard_label_name",
]

#: Error assigned to pixels replaced because their flux was zero / NaN (chip gaps, bad pixels), in
#: units of the (normalised) flux: such pixels carry no weight in any chi-square.
BAD_PIXEL_ERROR = 1.0e5

_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fz")
_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".dat", ".asc", ".ecsv")

# --------------------------------------------------------------------------- label names
_ALIASES = {
    "teff": ("teff", "t_eff", "temperature", "tef", "teff_k"),
    "logg": ("logg", "log_g", "logg_dex", "log(g)", "grav"),
    "feh": ("feh", "fe_h", "[fe/h]", "m_h", "[m/h]", "mh", "metals", "metallicity"),
    "afe": ("afe", "alpha_fe", "[alpha/fe]", "alpha_m", "[alpha/m]", "[a/fe]", "a_fe", "a_m",
            "[a/m]"),
}
_ALIAS_LOOKUP = {alias.replace(" ", ""): name for name, aliases in _ALIASES.items()
                 for alias in aliases}
# GANDALF's axis_labels for the standard labels (used when writing).
_GANDALF_NAMES = {"teff": "Teff", "logg": "logg", "feh": "[M/H]", "afe": "[alpha/Fe]"}


def standard_label_name(name) -> str:
    """Map a label name from a file to astrocore's: 'Teff' -> teff, '[M/H]' -> feh, ... .

    Names that are not standard stellar labels are lower-cased with non-alphanumerics -> '_'.
    """
    text = str(name).strip()
    key = text.lower().replace(" ", "")
    if key in _ALIAS_LOOKUP:
        return _ALIAS_LOOKUP[key]
    clean = re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")
    return clean or "label"


def _label_table(columns: dict, n: int) -> Table:
    """A Table from {original name: values}; names standardised, collisions keep the original."""
    table = Table()
    for original, values in columns.items():
        name = standard_label_name(original)
        if name in table.colnames:
            name = re.sub(r"[^0-9a-zA-Z]+", "_", str(original)).strip("_") or "label"
            while name in table.colnames:
                name += "_"
        values = np.asarray(values)
        if values.dtype.kind == "S":
            values = np.char.strip(np.char.decode(values, "ascii", errors="replace"))
        if values.shape[:1] != (n,):
            continue
        table[name] = values
    return table


# --------------------------------------------------------------------------- helpers
def _count(n: int) -> str:
    return f"{n} spectrum" if n == 1 else f"{n} spectra"


def _where(path) -> str:
    return str(path)


def _fail(path, message: str) -> DataError:
    return DataError(f"{_where(path)}: {message}")


def _dataset(path, spectra, wavelength, labels, errors, provenance) -> Dataset:
    """Construct a Dataset, prefixing any validation error with the file name."""
    try:
        return Dataset(spectra, wavelength, labels, errors, provenance)
    except DataError as error:
        raise _fail(path, str(error)) from error
    except (TypeError, ValueError) as error:
        raise _fail(path, f"could not build a dataset: {error}") from error


def _check_file(path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file (expected {what}).")
    if path.is_dir():
        raise DataError(f"{path} is a folder; expected {what}.")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); expected {what}.")
    return path


def _sniff(path: Path) -> str:
    """'fits', 'npz', 'npy', 'gzip' or 'text' from the first bytes of a file."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(b"SIMPLE  ="):
        return "fits"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    return "text"


def _open_fits(path):
    """``fits.open`` that turns "not FITS" into a DataError naming the file."""
    path = _check_file(path, "a FITS file")
    kind = _sniff(path)
    if kind not in ("fits", "gzip"):
        raise _fail(path, "is not a FITS file (it does not start with 'SIMPLE  =').")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncation is reported below as a DataError
            hdul = fits.open(path, memmap=False)
            hdul.verify("silentfix")
    except (OSError, ValueError, TypeError, IndexError, fits.VerifyError) as error:
        raise _fail(path, f"could not be read as FITS: {error}") from error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for hdu in hdul:  # read every HDU now so truncated / corrupt data fail here
                _ = hdu.data
    except (OSError, ValueError, TypeError, IndexError, fits.VerifyError) as error:
        hdul.close()
        raise _fail(path, f"is truncated or corrupt ({error}).") from error
    return hdul


def _to_angstrom(values, unit, path) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if unit:
        from astropy import units as u

        try:
            parsed = u.Unit(str(unit).strip(), parse_strict="silent")
            if parsed.physical_type == "length":
                return values * parsed.to(u.AA)
        except (ValueError, TypeError):
            pass
    return values


def _sanity_wavelength(path, wavelength: np.ndarray) -> np.ndarray:
    wavelength = np.asarray(wavelength, dtype=np.float64).ravel()
    if wavelength.size == 0:
        raise _fail(path, "the wavelength axis is empty.")
    if not np.all(np.isfinite(wavelength)):
        raise _fail(path, "the wavelength axis contains NaN or infinite values.")
    if np.nanmax(wavelength) < 50:
        raise _fail(
            path,
            f"wavelengths run {wavelength.min():g}-{wavelength.max():g}: these look like microns "
            "or log10(Angstrom), not Angstrom. Give wavelengths in Angstrom (or set the unit).",
        )
    if wavelength.size > 1 and np.all(np.diff(wavelength) < 0):
        raise _fail(path, "the wavelength axis is decreasing; astrocore needs increasing "
                          "wavelengths (reverse the pixel order).")
    return wavelength


def _header_wavelength(header, n_pixels: int, path, assume_log: bool | None = None):
    """Wavelength (Angstrom) from CRVAL1 / CDELT1 (or CD1_1) / CRPIX1; None if keys are absent.

    Log10 axes are recognised by CTYPE1 containing 'LOG', DC-FLAG = 1, or (APOGEE / SDSS
    convention) CRVAL1 < 5 without a CUNIT1.
    """
    if "CRVAL1" not in header:
        return None
    step = header.get("CDELT1", header.get("CD1_1"))
    if step is None:
        raise _fail(path, "the header has CRVAL1 but no CDELT1 / CD1_1 (wavelength step).")
    try:
        start = float(header["CRVAL1"])
        step = float(step)
        ref = float(header.get("CRPIX1", 1.0))
    except (TypeError, ValueError) as error:
        raise _fail(path, f"non-numeric wavelength keywords CRVAL1 / CDELT1: {error}") from error
    pixels = np.arange(n_pixels) + 1.0 - ref
    if assume_log is None:
        ctype = str(header.get("CTYPE1", "")).upper()
        assume_log = ("LOG" in ctype or header.get("DC-FLAG", 0) == 1
                      or (start < 5 and "CUNIT1" not in header))
    if assume_log:
        return 10.0 ** (start + step * pixels)
    return _to_angstrom(start + step * pixels, header.get("CUNIT1"), path)


def _provenance(path, generator: str, **extra) -> dict:
    from .. import __version__

    path = Path(path)
    info = {"generator": generator, "version": __version__, "file": path.name,
            "path": str(path.resolve())}
    if path.is_file():
        info["sha256"] = file_sha256(path)
    info.update(extra)
    return info


# --------------------------------------------------------------------------- APOGEE
_APOGEE_LABEL_KEYS = {
    "teff": ("TEFF",),
    "logg": ("LOGG",),
    "feh": ("FE_H", "M_H", "FEH", "METALS", "MH"),
    "afe": ("ALPHA_M", "ALPHA_FE", "AFE", "A_M"),
}
_ID_KEYS = ("APOGEE_ID", "OBJID", "OBJECT", "TMASS_ID")


def _is_apogee_header(header, path: Path) -> bool:
    name = path.name.lower()
    if name.startswith(("apstar", "asstar", "aspcapstar", "apvisit")):
        return True
    telescope = str(header.get("TELESCOP", "")).lower()
    if telescope.startswith(("apo", "lco")) and ("NVISITS" in header or "OBJID" in header):
        return True
    return "APOGEE_ID" in header or "NVISITS" in header or "APRED" in header


def _looks_like_apogee(hdul, path: Path) -> bool:
    if _is_apogee_header(hdul[0].header, path):
        return True
    if len(hdul) > 1 and hdul[1].is_image and "CRVAL1" in hdul[1].header:
        try:
            start = float(hdul[1].header["CRVAL1"])
        except (TypeError, ValueError):
            return False
        n = hdul[1].header.get("NAXIS1", 0)
        return abs(start - APOGEE_LOG_START) < 0.01 and n in (APOGEE_FULL_N_PIXELS,
                                                            APOGEE_N_PIXELS)
    return False


def _header_labels(headers, tables) -> dict:
    """TEFF / LOGG / FE_H / ALPHA_M from headers or one-row tables; -9999 sentinels dropped."""
    found = {}
    for name, keys in _APOGEE_LABEL_KEYS.items():
        for key in keys:
            value = None
            for header in headers:
                if key in header:
                    value = header[key]
                    break
            if value is None:
                for table in tables:
                    if key in table.colnames and np.ndim(table[key][0]) == 0:
                        value = table[key][0]
                        break
            try:
                value = float(value) if value is not None else None
            except (TypeError, ValueError):
                value = None
            if value is not None and np.isfinite(value) and value > -9990:
                found[name] = value
                break
    return found


def _fill_bad(flux, errors, bad, normalised: bool):
    """Replace bad pixels: 1.0 (normalised) or the row's median good flux, with a huge error."""
    flux = np.array(flux, dtype=np.float64)
    errors = None if errors is None else np.array(errors, dtype=np.float64)
    for row in range(len(flux)):
        mask = bad[row]
        if not mask.any():
            continue
        good = flux[row][~mask]
        level = 1.0 if normalised else (float(np.median(good)) if good.size else 1.0)
        flux[row, mask] = level
        if errors is not None:
            errors[row, mask] = BAD_PIXEL_ERROR * max(abs(level), 1e-30)
    return flux, errors


def read_apogee(path, *, rows: str = "combined", normalize=None, trim_gaps: bool = False,
                kind: str | None = None) -> Dataset:
    """Read an APOGEE ``aspcapStar`` or ``apStar`` FITS file.

    Layout: HDU1 the flux (aspcapStar: 1-d, already pseudo-continuum normalised; apStar:
    ``(n_visits + 2, n_pix)`` or 1-d for a single visit, rows 0 and 1 the pixel- and
    global-weighted combined spectra, rows 2.. the visits), HDU2 the flux error (same shape).
    The wavelength comes from the HDU1 (or primary) header:
    ``10**(CRVAL1 + CDELT1 * arange(NAXIS1))`` (CRVAL1 = 4.179, CDELT1 = 6e-6, 8575 pixels in
    real files).

    Parameters
    ----------
    rows : "combined", "visits" or "all"
        apStar rows to return (aspcapStar files have a single spectrum).
    normalize : bool, optional
        Continuum-normalise with :func:`~astrocore.data.payne.continuum_normalise`. Default:
        True for apStar (raw flux; astrocore models expect normalised flux), False for
        aspcapStar (already normalised).
    trim_gaps : bool
        Return only the 7214 chip pixels of the combined-spectrum grid (:func:`to_apogee_grid`).
    kind : "aspcapStar" or "apStar", optional
        Override the detection (file name prefix, NVISITS keyword, 2-d flux, flux level).

    Zero or NaN flux pixels (the chip gaps, flagged pixels) and pixels with a non-finite or
    non-positive error are not rejected: their flux is set to 1.0 (the continuum) - or to the
    row's median flux for un-normalised apStar flux - and their error to
    :data:`BAD_PIXEL_ERROR`; the count per spectrum is recorded in the provenance
    (``bad_pixels``). Labels: ``id`` from APOGEE_ID / OBJID / OBJECT (else the file stem), and
    teff / logg / feh / afe from header keywords or one-row table extensions (TEFF, LOGG,
    FE_H or M_H, ALPHA_M) when present; for apStar visits also vhelio / snr / hjd from
    VHELIO<k> / SNRVIS<k> / HJD<k> keywords.
    """
    path = Path(path)
    if rows not in ("combined", "visits", "all"):
        raise DataError(f"rows must be 'combined', 'visits' or 'all'; got {rows!r}.")
    with _open_fits(path) as hdul:
        if len(hdul) < 2 or not hdul[1].is_image or hdul[1].data is None:
            raise _fail(path, f"is not an APOGEE aspcapStar/apStar file: HDU1 must hold the flux "
                              f"image (the file has {len(hdul)} HDUs: "
                              f"{[h.name for h in hdul]}).")
        try:
            flux = np.array(hdul[1].data, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise _fail(path, f"HDU1 is not numeric: {error}") from error
        if flux.ndim not in (1, 2) or flux.shape[-1] < 2:
            raise _fail(path, f"HDU1 has shape {flux.shape}; expected (n_pix,) or (n_rows, n_pix).")
        errors = None
        if len(hdul) > 2 and hdul[2].is_image and hdul[2].data is not None:
            errors = np.array(hdul[2].data, dtype=np.float64)
            if errors.shape != flux.shape:
                raise _fail(path, f"HDU2 (errors) has shape {errors.shape} but HDU1 (flux) has "
                                  f"{flux.shape}.")
        primary, header = hdul[0].header, hdul[1].header
        tables = [Table(h.data) for h in hdul[1:]
                  if isinstance(h, fits.BinTableHDU) and h.data is not None and len(h.data) == 1]
        n_pix = flux.shape[-1]
        wavelength = _header_wavelength(header, n_pix, path, assume_log=None)
        if wavelength is None:
            wavelength = _header_wavelength(primary, n_pix, path, assume_log=None)
        if wavelength is None:
            raise _fail(path, "no wavelength solution: HDU1 and the primary header lack CRVAL1 / "
                              "CDELT1 (APOGEE files have CRVAL1 = 4.179, CDELT1 = 6e-6).")
        if "NAXIS1" in header and int(header["NAXIS1"]) != n_pix:
            raise _fail(path, f"NAXIS1 = {header['NAXIS1']} but HDU1 has {n_pix} pixels.")
        has_model_hdu = len(hdul) > 3 and hdul[3].is_image and hdul[3].data is not None \
            and np.shape(hdul[3].data) == flux.shape
    wavelength = _sanity_wavelength(path, wavelength)

    if kind is None:
        lower = path.name.lower()
        if lower.startswith("aspcapstar"):
            kind = "aspcapStar"
        elif lower.startswith(("apstar", "asstar")) or "NVISITS" in primary or flux.ndim == 2:
            kind = "apStar"
        elif has_model_hdu or any("PARAM" in t.colnames for t in tables):
            kind = "aspcapStar"
        else:
            good = flux[np.isfinite(flux) & (flux != 0)]
            kind = "aspcapStar" if good.size and 0.3 < np.median(good) < 1.5 else "apStar"
    kinds = {"aspcapstar": "aspcapStar", "apstar": "apStar"}
    if str(kind).lower() not in kinds:
        raise DataError(f"kind must be 'aspcapStar' or 'apStar'; got {kind!r}.")
    kind = kinds[str(kind).lower()]

    star_id = next((str(h[k]).strip() for k in _ID_KEYS for h in (primary, header)
                    if k in h and str(h[k]).strip()), path.stem)
    flux2 = np.atleast_2d(flux)
    err2 = None if errors is None else np.atleast_2d(errors)
    n_rows = len(flux2)
    row_names = []
    if kind == "apStar" and n_rows > 1:
        n_visits = n_rows - 2 if n_rows > 2 else 1
        all_names = ["combined", "combined_global"][: min(2, n_rows)] + [
            f"visit{k}" for k in range(1, n_rows - 1)]
        if rows == "combined":
            select = [0]
        elif rows == "visits":
            select = list(range(2, n_rows)) if n_rows > 2 else [0]
        else:
            select = list(range(n_rows))
        row_names = [all_names[i] for i in select]
        flux2 = flux2[select]
        err2 = None if err2 is None else err2[select]
    else:
        n_visits = int(primary.get("NVISITS", 1)) if kind == "apStar" else None
        row_names = ["combined"] * n_rows if kind == "apStar" else ["aspcap"] * n_rows

    if normalize is None:
        normalize = kind == "apStar"
    bad = ~np.isfinite(flux2) | (flux2 == 0)
    if err2 is not None:
        bad |= ~np.isfinite(err2) | (err2 <= 0)
    full = apogee_wavelength(full=True)
    on_full_grid = wavelength.size == APOGEE_FULL_N_PIXELS and np.allclose(
        wavelength, full, rtol=0, atol=0.01)
    gap = np.zeros(wavelength.size, dtype=bool)
    if on_full_grid:
        gap[:] = True
        gap[apogee_pixel_indices()] = False
    provenance = _provenance(path, "apogee", kind=kind, rows=rows if kind == "apStar" else None,
                             normalized=bool(normalize or kind == "aspcapStar"))
    if normalize:
        clean = np.where(bad, np.nan, flux2)
        if err2 is not None:
            flux2, err2 = continuum_normalise(wavelength, clean, np.where(bad, np.nan, err2),
                                              **{k: v for k, v in CONTINUUM_METHOD.items()
                                                 if k != "method"})
        else:
            flux2 = continuum_normalise(wavelength, clean, **{
                k: v for k, v in CONTINUUM_METHOD.items() if k != "method"})
        provenance["continuum_normalisation"] = dict(CONTINUUM_METHOD)
    normalised = bool(normalize or kind == "aspcapStar")
    flux2, err2 = _fill_bad(flux2, err2, bad, normalised)
    provenance["bad_pixels"] = {
        "count_per_spectrum": [int(b.sum()) for b in bad],
        "in_chip_gaps_per_spectrum": [int((b & gap).sum()) for b in bad] if on_full_grid else None,
        "fill_flux": 1.0 if normalised else "median flux of the spectrum",
        "fill_error": BAD_PIXEL_ERROR,
        "rule": "flux zero or non-finite, or error non-finite or <= 0",
    }

    table = Table()
    ids = [star_id if name in ("combined", "aspcap") else f"{star_id}_{name}"
           for name in row_names]
    table["id"] = ids
    table["apogee_id"] = [star_id] * len(ids)
    if kind == "apStar":
        table["row"] = row_names
    labels = _header_labels([primary, header], tables)
    for name, value in labels.items():
        table[name] = np.full(len(ids), value)
    if kind == "apStar":
        for key, column in (("VHELIO", "vhelio"), ("SNRVIS", "snr"), ("HJD", "hjd")):
            values = []
            for name in row_names:
                if name.startswith("visit"):
                    value = primary.get(f"{key}{name[5:]}")
                else:
                    value = primary.get("SNR") if key == "SNRVIS" else None
                try:
                    values.append(float(value) if value is not None else np.nan)
                except (TypeError, ValueError):
                    values.append(np.nan)
            if np.isfinite(values).any():
                table[column] = values
        provenance["n_visits"] = n_visits
    dataset = _dataset(path, flux2, wavelength, table, err2, provenance)
    return to_apogee_grid(dataset) if trim_gaps else dataset


def to_apogee_grid(dataset: Dataset, tolerance_aa: float = 0.01) -> Dataset:
    """Map spectra on the full APOGEE log grid (8575 pixels, chip gaps included) - or any grid
    containing the chip pixels - onto the 7214-pixel combined-spectrum grid of The Payne /
    The Cannon, by selecting the chip pixels (no interpolation)."""
    target = apogee_wavelength()
    source = dataset.wavelength
    if source.size == target.size and np.allclose(source, target, rtol=0, atol=tolerance_aa):
        return dataset
    index = np.clip(np.searchsorted(source, target), 1, source.size - 1)
    nearer_left = np.abs(source[index - 1] - target) <= np.abs(source[index] - target)
    index = np.where(nearer_left, index - 1, index)
    offset = np.abs(source[index] - target)
    if offset.max() > tolerance_aa:
        n_off = int((offset > tolerance_aa).sum())
        raise DataError(
            f"the spectra have {source.size} pixels over {source[0]:.2f}-{source[-1]:.2f} "
            f"Angstrom and {n_off} of the 7214 APOGEE grid pixels have no pixel within "
            f"{tolerance_aa} Angstrom; they are not on the APOGEE log-lambda grid "
            "(10**(4.179 + 6e-6 i)). Use resample_to(dataset, apogee_wavelength()) instead."
        )
    provenance = dict(dataset.provenance)
    provenance["apogee_grid"] = {"from_n_pixels": int(source.size), "method": "pixel selection",
                                 "chips_full_grid_index": [list(c) for c in APOGEE_CHIPS]}
    return Dataset(
        dataset.spectra[:, index], target, dataset.labels.copy(),
        None if dataset.errors is None else dataset.errors[:, index], provenance,
    )


# --------------------------------------------------------------------------- npz (The Payne)
_NPZ_FLUX_KEYS = (("spectra", "spec_errs"), ("spectrum", "spec_err"), ("flux", "flux_err"),
                  ("flux", "error"), ("flux", "errors"), ("spectra", "errors"),
                  ("X", "X_err"))
_NPZ_LABEL_RENAMES = {"snrs": "snr", "vhelios": "vhelio", "hjds": "hjd", "ids": "id",
                      "apogee_ids": "apogee_id"}


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
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: np.asarray(archive[key]) for key in archive.files}
    except AttributeError as error:
        raise _fail(path, "holds a single .npy array, not a .npz of named arrays.") from error
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise _fail(path, f"could not be read as .npz (numeric arrays only, no pickled "
                          f"objects): {error}") from error
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
def _load_npy(path: Path, allow_pickle: bool):
    try:
        return np.load(path, allow_pickle=allow_pickle)
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise _fail(path, "stores Python objects (a pickled object array). Re-save it as a "
                              "plain array (e.g. np.save(path, np.asarray(ids, dtype=str))) or, "
                              "for a folder you trust, pass allow_pickle=True.") from error
        raise _fail(path, f"could not be read as .npy: {error}") from error
    except (OSError, EOFError) as error:
        raise _fail(path, f"could not be read as .npy: {error}") from error


def read_gandalf_folder(path, wavelength=None, allow_pickle: bool = False) -> Dataset:
    """Read a GANDALF-format folder.

    Files: ``X.npy`` (n, n_pix) spectra; ``params.npy`` (n, n_params) labels; ``ids.npy`` (n,);
    ``axis_labels.npy`` (n_params,) label names (``Teff``, ``logg``, ``[M/H]``, ``[alpha/Fe]`` ->
    teff, logg, feh, afe; others lower-cased); optional ``wavelength.npy`` (Angstrom), optional
    ``errors.npy`` / ``X_err.npy`` (n, n_pix) and ``provenance.json``. Without
    ``wavelength.npy`` the ``wavelength`` argument is required. Only ``X.npy`` is mandatory.
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
    spectra = _load_npy(path / "X.npy", allow_pickle)
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
    if (path / "wavelength.npy").exists():
        wl = _load_npy(path / "wavelength.npy", allow_pickle)
        source = "wavelength.npy"
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
        params = _load_npy(path / "params.npy", allow_pickle)
        if params.ndim == 1 and n == 1:
            params = params[None, :]
        elif params.ndim == 1:
            params = params[:, None]
        if params.ndim != 2 or params.shape[0] != n:
            raise _fail(path / "params.npy", f"has shape {params.shape}; expected ({n}, n_params) "
                                             "to match X.npy.")
        if (path / "axis_labels.npy").exists():
            names = [str(x) for x in _load_npy(path / "axis_labels.npy", allow_pickle).ravel()]
            if len(names) != params.shape[1]:
                raise _fail(path / "axis_labels.npy",
                            f"has {len(names)} names {names} but params.npy has "
                            f"{params.shape[1]} columns.")
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
        ids = _load_npy(path / "ids.npy", allow_pickle).ravel()
        if ids.size != n:
            raise _fail(path / "ids.npy", f"has {ids.size} ids for {n} spectra.")
        if ids.dtype.kind == "O":
            ids = ids.astype(str)
    errors = None
    for name in ("errors.npy", "X_err.npy"):
        if (path / name).exists():
            errors = _load_npy(path / name, allow_pickle)
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
            provenance = json.loads((path / "provenance.json").read_text())
        except (ValueError, OSError):
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

    Writes X.npy (float32), params.npy (float64; every numeric, non-boolean label column except
    ``id``), axis_labels.npy (teff, logg, feh, afe written as Teff, logg, [M/H], [alpha/Fe]),
    ids.npy (integers stay integers, anything else becomes strings), wavelength.npy,
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
    for name in dataset.labels.colnames:
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
    _atomic_save(np.asarray(names, dtype=str), path / "axis_labels.npy")
    _atomic_save(ids, path / "ids.npy")
    _atomic_save(np.asarray(dataset.wavelength, dtype=np.float64), path / "wavelength.npy")
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
    return Dataset.load(path)


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
            if error_column is not None:
                errors = frame[error_column].to_numpy(dtype=np.float64)[None, :]
            elif ivar_column is not None:
                errors = _ivar_to_error(frame[ivar_column].to_numpy())[None, :]
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


# --------------------------------------------------------------------------- dispatch
def _call(reader, path, kwargs: dict, fmt: str) -> Dataset:
    accepted = inspect.signature(reader).parameters
    unknown = [k for k, v in kwargs.items() if k not in accepted and v is not None]
    if unknown:
        raise DataError(f"{path}: option(s) {unknown} do not apply to {fmt}; "
                        f"{reader.__name__} accepts {[p for p in accepted if p != 'path']}.")
    return reader(path, **{k: v for k, v in kwargs.items() if k in accepted})


def _load_dataset(path: Path) -> Dataset:
    try:
        return Dataset.load(path)
    except DataError:
        raise
    except Exception as error:  # corrupt folder / file written by an older version
        raise _fail(path, f"looks like an astrocore dataset but could not be read: "
                          f"{type(error).__name__}: {error}") from error


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
