"""APOGEE ``aspcapStar`` / ``apStar`` files, and mapping spectra onto the 7214-pixel combined grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..dataset import DataError, Dataset
from ..simulators.apogee_grid import (APOGEE_CHIPS, APOGEE_FULL_N_PIXELS, CONTINUUM_METHOD, apogee_pixel_indices,
                                      apogee_wavelength, continuum_normalise)
from .common import (_ID_KEYS, BAD_PIXEL_ERROR, _dataset, _fail, _fill_bad, _header_labels, _header_wavelength,
                     _open_fits, _provenance, _sanity_wavelength)
from .limits import guard


@guard
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
