"""SDSS optical spectra (spec / spec-lite FITS, or a CSV of wavelength and flux) on the 3522-pixel
4000-9000 Angstrom grid (log-linear, 1e-4 dex) used by the BHB simulator and BATMM.

The SDSS data model (``spec-PLATE-MJD-FIBER.fits``): HDU 1 ``COADD`` is a table with ``loglam``
(log10 of the vacuum wavelength in Angstrom), ``flux`` (1e-17 erg s^-1 cm^-2 A^-1), ``ivar``
(inverse variance of flux) and ``and_mask``. ``specutils``' "SDSS-III/IV spec" loader reads it when
it recognises the file; otherwise the table is read with astropy directly. Masked or zero-ivar
pixels are interpolated over; the spectrum is resampled linearly in log wavelength onto the grid.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..dataset import DataError
from . import limits
from .limits import guard

MAX_FILE_BYTES = 20 * 1024 * 1024
GRID_LOG_START = np.log10(4000.0)
GRID_PIXELS = 3522
GRID_LOG_STEP = 1e-4
MIN_COVERAGE = 0.9  # fraction of the grid the file must cover


def grid_wavelength() -> np.ndarray:
    """The 3522-pixel grid [Angstrom], 4000-9000 A, 1e-4 dex per pixel."""
    return 10 ** (GRID_LOG_START + GRID_LOG_STEP * np.arange(GRID_PIXELS))


def _payload(source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"No file at {path}.")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DataError(f"{path.name} is {path.stat().st_size / 1e6:.1f} MB; a spectrum file may be at most "
                            f"{MAX_FILE_BYTES / 1e6:.0f} MB.")
        return path.read_bytes(), name or path.name
    data = source.read() if hasattr(source, "read") else bytes(source)
    name = name or getattr(source, "name", None) or "upload"
    if not data:
        raise DataError(f"{name} is empty.")
    if len(data) > MAX_FILE_BYTES:
        raise DataError(f"{name} is {len(data) / 1e6:.1f} MB; a spectrum file may be at most "
                        f"{MAX_FILE_BYTES / 1e6:.0f} MB.")
    return data, name


def _with_specutils(data: bytes):
    """(log10 wavelength, flux, ivar) through specutils' SDSS spec loader, or None when it does not
    recognise the file."""
    try:
        from specutils import Spectrum1D  # lazy: specutils is slow to import
        from specutils.io.default_loaders.sdss import spec_identify
    except ImportError:  # pragma: no cover - specutils is a requirement
        return None
    with limits.open_fits_bytes(data, "spectrum") as hdul:
        try:
            recognised = spec_identify("read", hdul)
        except Exception:  # noqa: BLE001 - any missing keyword means "not this format"
            recognised = False
        if not recognised:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                spectrum = Spectrum1D.read(hdul, format="SDSS-III/IV spec")
        except Exception:  # noqa: BLE001 - specutils refuses a damaged file: the astropy reading stands
            return None
    wavelength = spectrum.spectral_axis.to_value("Angstrom")
    flux = np.asarray(spectrum.flux.value, float)
    ivar = (np.asarray(spectrum.uncertainty.array, float) if spectrum.uncertainty is not None
            else np.ones_like(flux))
    return np.log10(wavelength), flux, ivar


def _with_astropy(data: bytes, name: str):
    """(log10 wavelength, flux, ivar, and_mask) from HDU 1 of a spec / spec-lite file."""
    hdul = limits.open_fits_bytes(data, name)
    with hdul:
        if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
            raise DataError(f"{name}: expected an SDSS spec / spec-lite file with a table (COADD) in HDU 1; "
                            f"found {len(hdul)} HDU(s): {', '.join(type(h).__name__ for h in hdul)}.")
        try:
            table = Table(hdul[1].data)
        except (ValueError, TypeError) as error:
            raise DataError(f"{name}: the HDU 1 table could not be read ({error}).") from None
    columns = {c.lower(): c for c in table.colnames}
    missing = [c for c in ("loglam", "flux") if c not in columns]
    if missing:
        raise DataError(f"{name}: the HDU 1 table needs columns loglam and flux (and ivar); it has "
                        f"{', '.join(table.colnames)}.")
    loglam, flux = _numeric(table, columns["loglam"], name), _numeric(table, columns["flux"], name)
    ivar = _numeric(table, columns["ivar"], name) if "ivar" in columns else np.ones_like(flux)
    mask = (_numeric(table, columns["and_mask"], name).astype(np.int64) if "and_mask" in columns
            else np.zeros(len(flux), np.int64))
    return loglam, flux, ivar, mask


def _numeric(table, column: str, name: str) -> np.ndarray:
    """A table column as a 1-d float array, or a DataError naming the column."""
    try:
        values = np.asarray(table[column], float)
    except (TypeError, ValueError) as error:
        raise DataError(f"{name}: the column {column!r} is not numeric ({str(error)[:80]}).") from None
    if values.ndim != 1:
        raise DataError(f"{name}: the column {column!r} holds arrays of shape {values.shape[1:]}; expected one "
                        "number per row.")
    return values


def _from_csv(data: bytes, name: str):
    limits.check_text(data, name, max_line=65536)
    try:
        table = Table.read(io.BytesIO(data), format="ascii.csv")
    except Exception as error:  # noqa: BLE001 - any parse failure is a bad upload
        raise DataError(f"{name} is not a readable CSV table ({error}).") from None
    columns = {c.lower().strip(): c for c in table.colnames}
    wave_key = next((columns[k] for k in ("wavelength", "wave", "lambda", "wavelength_aa") if k in columns), None)
    if "loglam" in columns:
        loglam = _numeric(table, columns["loglam"], name)
    elif wave_key is not None:
        loglam = np.log10(np.clip(_numeric(table, wave_key, name), 1.0, None))
    else:
        raise DataError(f"{name}: a CSV spectrum needs a 'wavelength' (Angstrom) or 'loglam' column and 'flux'; "
                        f"it has {', '.join(table.colnames)}.")
    if "flux" not in columns:
        raise DataError(f"{name}: no 'flux' column; the columns are {', '.join(table.colnames)}.")
    flux = _numeric(table, columns["flux"], name)
    ivar = _numeric(table, columns["ivar"], name) if "ivar" in columns else np.ones_like(flux)
    return loglam, flux, ivar, np.zeros(len(flux), np.int64)


def resample(loglam: np.ndarray, flux: np.ndarray, ivar: np.ndarray, mask=None, name: str = "spectrum"):
    """Flux and ivar on the 3522-pixel grid. Bad pixels (ivar <= 0, mask != 0, non-finite) are
    interpolated over (their ivar is 0 on the grid); less than 90 % coverage of 4000-9000 A is an error."""
    loglam, flux, ivar = (np.asarray(v, float).ravel() for v in (loglam, flux, ivar))
    if not (len(loglam) == len(flux) == len(ivar)) or len(flux) < 10:
        raise DataError(f"{name}: loglam, flux and ivar must be equal-length columns of at least 10 pixels; got "
                        f"{len(loglam)}, {len(flux)}, {len(ivar)}.")
    order = np.argsort(loglam)
    loglam, flux, ivar = loglam[order], flux[order], ivar[order]
    good = np.isfinite(loglam) & np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
    if mask is not None:
        good &= np.asarray(mask)[order] == 0
    if good.sum() < 10:
        raise DataError(f"{name}: fewer than 10 good pixels (finite flux, ivar > 0, and_mask = 0).")
    grid = GRID_LOG_START + GRID_LOG_STEP * np.arange(GRID_PIXELS)
    covered = (grid >= loglam[good].min()) & (grid <= loglam[good].max())
    if covered.mean() < MIN_COVERAGE:
        raise DataError(f"{name}: covers {10 ** loglam[good].min():.0f}-{10 ** loglam[good].max():.0f} Angstrom, "
                        f"{100 * covered.mean():.0f} % of the 4000-9000 Angstrom the model needs (at least "
                        f"{100 * MIN_COVERAGE:.0f} %).")
    flux_grid = np.interp(grid, loglam[good], flux[good]).astype(np.float32)
    ivar_grid = np.interp(grid, loglam, np.where(good, ivar, 0.0)).astype(np.float32)
    ivar_grid[~covered] = 0.0
    return flux_grid, ivar_grid


@guard
def read_sdss_spectrum(source, name: str | None = None) -> dict:
    """One SDSS spectrum (path, bytes or upload; spec / spec-lite FITS, or CSV with wavelength
    [Angstrom] or loglam, flux and optional ivar) on the 3522-pixel grid.

    Returns ``{"wavelength": (3522,) A, "flux": (3522,) 1e-17 erg s^-1 cm^-2 A^-1, "ivar": (3522,),
    "reader": "specutils" | "astropy" | "csv", "name": str}``.
    """
    data, name = _payload(source, name)
    if limits.is_gzip(data):
        data = limits.gunzip(data, name, limit=8 * MAX_FILE_BYTES)
    if name.lower().endswith(".csv"):
        loglam, flux, ivar, mask = _from_csv(data, name)
        reader = "csv"
    elif data[:6] == b"SIMPLE" or name.lower().endswith((".fits", ".fit", ".fits.gz")):
        loglam, flux, ivar, mask = _with_astropy(data, name)  # also validates the layout
        reader = "astropy"
        via_specutils = _with_specutils(data)
        if via_specutils is not None:
            loglam, flux, ivar = via_specutils
            reader = "specutils"  # specutils applies no mask; keep SDSS's and_mask from the table
            mask = mask if len(mask) == len(flux) else None
    else:
        raise DataError(f"{name}: expected an SDSS spec / spec-lite FITS file or a CSV with wavelength and flux.")
    flux_grid, ivar_grid = resample(loglam, flux, ivar, mask, name)
    return {"wavelength": grid_wavelength(), "flux": flux_grid, "ivar": ivar_grid, "reader": reader, "name": name}


def write_spec_lite(path, wavelength_aa: np.ndarray, flux: np.ndarray, ivar: np.ndarray | None = None,
                    header: dict | None = None) -> Path:
    """Write a spectrum as an SDSS spec-lite file (HDU 1 ``COADD``: loglam, flux, ivar, and_mask),
    with the primary-header keywords specutils uses to recognise the format."""
    wavelength_aa = np.asarray(wavelength_aa, float)
    flux = np.asarray(flux, np.float32)
    ivar = np.ones_like(flux) if ivar is None else np.asarray(ivar, np.float32)
    primary = fits.PrimaryHDU()
    primary.header.update({"TELESCOP": "SDSS 2.5-M", "VERS2D": "v5_7_0", "FIBERID": 1, "PLATE": 0, "MJD": 0,
                           "BUNIT": "1E-17 erg/cm^2/s/Ang", **(header or {})})
    table = fits.BinTableHDU(Table({"flux": flux, "loglam": np.log10(wavelength_aa).astype(np.float32), "ivar": ivar,
                                    "and_mask": np.zeros(len(flux), np.int32)}), name="COADD")
    path = Path(path)
    fits.HDUList([primary, table]).writeto(path, overwrite=True)
    return path
