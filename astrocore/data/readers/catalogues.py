"""Nebula catalogues (FITS or CSV) with emission-line fluxes and errors -> a labels-only Dataset.

Column names are mapped to the PHANGS-MUSE nebular-catalogue convention (Groves et al. 2023,
MNRAS 520, 4902): ``HA6562_FLUX``, ``HA6562_FLUX_ERR``, ``OIII5006_FLUX``, ``NII6583_FLUX``,
``SII6716_FLUX``, ``SII6730_FLUX``, ``OI6300_FLUX``, ``HB4861_FLUX``, ... Other spellings
(``Halpha``, ``H_alpha_flux``, ``OIII_5007``, ``NII6584_err``, ``SII6731``, ``e_Hbeta``...) are
recognised. The diagnostic log ratios are computed with non-detections (flux < 3 sigma) at
their 3-sigma upper limit. Rows that cannot be classified get a ``reason`` (missing line,
negative flux without an error, Halpha or Hbeta not detected) instead of an exception.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..dataset import DataError, Dataset
from ..simulators.nebulae import LINE_NAMES, LINES
from ..simulators.nebulae_observe import DETECTION_SIGMA, FEATURES, features_from_fluxes
from . import limits
from .limits import guard

MAX_BYTES = 50_000_000
MAX_ROWS = 500_000
# Lines each feature needs (the rest are optional).
REQUIRED_LINES = ("HB4861", "OIII5006", "HA6562", "NII6583", "SII6716", "SII6730", "OI6300")
# Alternative spellings (lower case, letters and digits only) of each line.
_ALIASES = {
    "HB4861": ("hb4861", "hbeta", "hb", "hbeta4861", "h4861", "hbeta4862"),
    "OIII4958": ("oiii4958", "oiii4959", "o34959", "o3_4959"),
    "OIII5006": ("oiii5006", "oiii5007", "o35007", "oiii"),
    "NI5200": ("ni5200", "ni5198", "ni5197", "ni5199"),
    "NII5754": ("nii5754", "nii5755", "n25755"),
    "OI6300": ("oi6300", "o16300", "oi6302", "oi"),
    "OI6363": ("oi6363", "oi6364", "o16364"),
    "NII6548": ("nii6548", "nii6549", "n26548"),
    "HA6562": ("ha6562", "ha6563", "halpha", "ha", "h6563", "halpha6563"),
    "NII6583": ("nii6583", "nii6584", "n26584", "nii"),
    "SII6716": ("sii6716", "sii6717", "s26716"),
    "SII6730": ("sii6730", "sii6731", "s26731"),
    "SIII9068": ("siii9068", "siii9069", "s39069"),
}
_ALIAS_TO_LINE = {alias: line for line, aliases in _ALIASES.items() for alias in aliases}
_ERROR_MARKERS = ("fluxerr", "err", "error", "sigma", "unc")


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def classify_column(name: str) -> tuple[str, bool] | None:
    """(line, is_error) for a catalogue column name, or None when it is not a line flux."""
    key = _normalise(name)
    is_error = False
    if key.startswith("e") and _normalise(name[2:] if name[:2].lower() == "e_" else "") in _ALIAS_TO_LINE:
        return _ALIAS_TO_LINE[_normalise(name[2:])], True
    for marker in _ERROR_MARKERS:
        if key.endswith(marker):
            key, is_error = key[: -len(marker)], True
            break
    for suffix in ("flux", "f"):
        if key.endswith(suffix) and key[: -len(suffix)] in _ALIAS_TO_LINE:
            key = key[: -len(suffix)]
            break
    if key.startswith("flux") and key[4:] in _ALIAS_TO_LINE:
        key = key[4:]
    line = _ALIAS_TO_LINE.get(key)
    return (line, is_error) if line else None


def map_columns(colnames) -> dict[str, str]:
    """{catalogue column -> PHANGS-style column (``<LINE>_FLUX`` or ``<LINE>_FLUX_ERR``)}; the
    first column found for each target wins."""
    mapping, taken = {}, set()
    for name in colnames:
        found = classify_column(name)
        if found is None:
            continue
        line, is_error = found
        target = f"{line}_FLUX_ERR" if is_error else f"{line}_FLUX"
        if target not in taken:
            mapping[name], taken = target, taken | {target}
    return mapping


def _read_table(data: bytes, name: str) -> Table:
    suffix = "".join(Path(name).suffixes[-2:]).lower()
    is_fits = data[:6] == b"SIMPLE" or suffix.endswith((".fits", ".fit", ".fits.gz", ".fz")) or data[:2] == b"\x1f\x8b"
    try:
        if is_fits:
            with limits.open_fits_bytes(data, name) as hdul:
                for hdu in hdul:
                    if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)) and hdu.data is not None:
                        return Table(hdu.data)
            raise DataError(f"{name}: a FITS file without a table extension; expected a catalogue table.")
        limits.check_text(data, name, max_line=65536)
        text = data.decode("utf-8", errors="strict")
        return Table.read(text, format="ascii.ecsv" if text.startswith("# %ECSV") else "ascii.csv")
    except DataError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, TypeError) as error:
        raise DataError(f"{name} could not be read as a FITS or CSV table: {error}") from error


@guard
def read_nebula_catalogue(source, name: str | None = None, max_bytes: int = MAX_BYTES,
                          max_rows: int = MAX_ROWS) -> Dataset:
    """Read a catalogue of nebulae (path, or bytes with ``name``) into a labels-only Dataset.

    The labels keep the catalogue's own columns and add ``<LINE>_FLUX`` / ``<LINE>_FLUX_ERR``
    [catalogue flux units] for every recognised line, ``<LINE>_DETECTED``, the log ratios of
    :data:`~astrocore.data.simulators.nebulae.RATIO_TITLES`, ``usable`` and ``reason`` (empty for
    a usable row) and ``upper_limits`` (lines entering the ratios at their 3-sigma limit).
    """
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), name or "upload"
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"No catalogue at {path}.")
        if path.stat().st_size > max_bytes:
            raise DataError(f"{path.name} is {path.stat().st_size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
        data, name = path.read_bytes(), name or path.name
    if len(data) > max_bytes:
        raise DataError(f"{name} is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
    if not data:
        raise DataError(f"{name} is empty; expected a FITS or CSV table of line fluxes.")
    table = _read_table(data, name)
    if len(table) == 0:
        raise DataError(f"{name} has no rows.")
    if len(table) > max_rows:
        raise DataError(f"{name} has {len(table)} rows; the limit is {max_rows}.")
    mapping = map_columns(table.colnames)
    if not any(target.endswith("_FLUX") for target in mapping.values()):
        raise DataError(f"{name}: no line-flux columns recognised (expected e.g. HA6562_FLUX, HB4861_FLUX, "
                        f"OIII5006_FLUX, NII6583_FLUX, SII6716_FLUX, SII6730_FLUX, OI6300_FLUX); "
                        f"got columns {table.colnames[:15]}.")
    try:
        return nebula_table(table, mapping, name)
    except DataError as error:
        raise DataError(f"{name}: {error}") from None


def _column(table: Table, name: str) -> np.ndarray:
    values = table[name]
    if hasattr(values, "filled"):
        values = values.filled(np.nan)
    if np.ndim(values) != 1:
        raise DataError(f"the column {name!r} holds arrays of shape {np.shape(values)[1:]}; expected one number per row.")
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return np.array([_to_float(v) for v in values])


def _to_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def nebula_table(table: Table, mapping: dict[str, str], name: str = "catalogue") -> Dataset:
    """Ratios, detections and reasons for a table whose columns ``mapping`` names (see
    :func:`map_columns`)."""
    n = len(table)
    inverse = {target: column for column, target in mapping.items()}
    fluxes, errors, reasons = {}, {}, [[] for _ in range(n)]
    for line in LINE_NAMES:
        flux_column, error_column = inverse.get(f"{line}_FLUX"), inverse.get(f"{line}_FLUX_ERR")
        fluxes[line] = _column(table, flux_column) if flux_column else np.full(n, np.nan)
        errors[line] = _column(table, error_column) if error_column else np.full(n, np.nan)
    # Without an error a flux is taken as measured; with one, below 3 sigma it is an upper limit.
    has_error = {line: np.isfinite(errors[line]) & (errors[line] > 0) for line in LINE_NAMES}
    used_errors = {line: np.where(has_error[line], errors[line], 0.0) for line in LINE_NAMES}
    ratios, detected = features_from_fluxes(fluxes, used_errors)
    for line in REQUIRED_LINES:
        if f"{line}_FLUX" not in inverse:
            for row in reasons:
                row.append(f"no {line} column")
            continue
        flux = fluxes[line]
        bad = ~np.isfinite(flux) | (~has_error[line] & (flux <= 0))
        for i in np.flatnonzero(bad):
            reasons[i].append(f"{line} missing or <= 0 without an error")
        if line in ("HA6562", "HB4861"):
            faint = ~bad & ~detected[line]
            for i in np.flatnonzero(faint):
                reasons[i].append(f"{line} not detected (S/N < {DETECTION_SIGMA:g})")
    out = table.copy(copy_data=True)
    if "id" not in out.colnames:
        out["id"] = np.arange(n)
    for line in LINE_NAMES:
        if f"{line}_FLUX" in inverse:
            out[f"{line}_FLUX"] = fluxes[line]
            out[f"{line}_FLUX_ERR"] = errors[line]
            out[f"{line}_DETECTED"] = detected[line]
    for ratio, values in ratios.items():
        out[ratio] = values
    feature_ok = np.isfinite(np.column_stack([ratios[f] for f in FEATURES])).all(1)
    for i in np.flatnonzero(~feature_ok):
        if not reasons[i]:
            reasons[i].append("a diagnostic ratio is undefined")
    out["reason"] = np.array(["; ".join(r) for r in reasons], dtype=str) if n else np.array([], dtype=str)
    out["usable"] = np.array([not r for r in reasons], dtype=bool)
    limits = [[line for line in REQUIRED_LINES if f"{line}_FLUX" in inverse and has_error[line][i]
               and not detected[line][i]] for i in range(n)]
    out["upper_limits"] = np.array([",".join(row) for row in limits], dtype=str)
    # Ratio columns of unusable rows stay (they may be partly defined); the classifier skips them.
    provenance = {"generator": "catalogue", "name": name, "column_map": mapping,
                  "wavelengths_aa": {line: LINES[line] for line in LINE_NAMES}}
    return Dataset(None, None, out, provenance=provenance)
