"""What every spectra reader shares: standard label names, file checks and sniffing, FITS
opening, wavelength units and sanity, provenance and bad-pixel filling."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ... import __version__
from ..dataset import DataError, Dataset
from ..simulators.apogee_grid import APOGEE_FULL_N_PIXELS, APOGEE_LOG_START, APOGEE_N_PIXELS, file_sha256
from . import limits

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
# GANDALF's params.npy columns, in order, when a folder does not name them.
_GANDALF_ORDER = ("teff", "logg", "feh", "afe")


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
    """``fits.open`` that turns "not FITS" into a DataError naming the file; the headers are checked
    against the size budget first (:func:`~.limits.check_fits`) and ``.gz`` is decompressed with a cap."""
    path = _check_file(path, "a FITS file")
    kind = _sniff(path)
    if kind not in ("fits", "gzip"):
        raise _fail(path, "is not a FITS file (it does not start with 'SIMPLE  =').")
    if kind == "gzip":
        if path.stat().st_size > limits.max_bytes():
            raise _fail(path, f"is {path.stat().st_size / 1e6:.0f} MB of gzip; too large to read.")
        return limits.open_fits_bytes(path.read_bytes(), str(path))
    limits.check_fits(path, str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncation is reported below as a DataError
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
            hdul.verify("silentfix")
    except limits._FITS_ERRORS as error:
        raise _fail(path, f"could not be read as FITS: {error}") from error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for hdu in hdul:  # read every HDU now so truncated / corrupt data fail here
                _ = hdu.data
                if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)) and hdu.data is not None:
                    for column in hdu.columns.names:
                        _ = hdu.data[column]
    except limits._FITS_ERRORS as error:
        hdul.close()
        raise _fail(path, f"is truncated or corrupt ({error}).") from error
    return hdul


def _load_dataset(path) -> Dataset:
    """:meth:`Dataset.load` of a file or folder, its sizes checked first and every failure a DataError."""
    path = Path(path)
    try:
        if path.is_dir():
            limits.check_npz(path / "spectra.npz", str(path / "spectra.npz"))
            if (path / "labels.ecsv").exists():
                limits.check_text(path / "labels.ecsv", str(path / "labels.ecsv"))
            provenance = path / "provenance.json"
            if provenance.exists() and provenance.stat().st_size > 10 * 1024 * 1024:
                raise _fail(provenance, "is larger than 10 MB; refused.")
        elif _sniff(path) == "fits":
            limits.check_fits(path, str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Dataset.load(path)
    except (DataError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - a corrupt folder / file written by an older version
        raise _fail(path, f"looks like an astrocore dataset but could not be read: "
                          f"{type(error).__name__}: {str(error)[:300]}") from error


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
    try:
        wavelength = np.asarray(wavelength, dtype=np.float64).ravel()
    except (TypeError, ValueError) as error:
        raise _fail(path, f"the wavelength axis is not numeric ({str(error)[:80]}).") from None
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
