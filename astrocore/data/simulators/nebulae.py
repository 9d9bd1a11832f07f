"""Emission-line nebulae for domain adaptation (Belfiore et al. 2025, A&A 694, A212): the models.

Three classes of ionised nebulae, with the lines MUSE observes (4750-9350 Angstrom; :data:`LINES`):

* HII regions from the MAPPINGS 5 photoionisation grid shipped with NebulaBayes (Thomas et al.
  2018, ApJ 856, 89; grid ``NB_HII_grid.fits.gz``: log U x log P/k x 12 + log O/H), interpolated
  linearly in log flux for continuous sampling. NebulaBayes 0.9.9 does not import with current
  scipy, so its folder is located with :func:`importlib.util.find_spec` and the FITS table read
  with astropy.
* Planetary nebulae (PN) and supernova remnants (SNR) from parametric models on pyneb emissivities
  (Luridiana, Morisset & Shaw 2015, A&A 573, A42): each line's flux relative to Hbeta is
  ``X^i/H^+ * eps_line(Te, ne) / eps_Hbeta(Te, ne)`` with case-B hydrogen recombination. PN: Te
  10-20 kK, ne 10^3-10^4 cm^-3, most oxygen as O++ (Kwitter & Henry 2022, PASP 134, 022001).
  SNR (radiative shocks): ne 50-1000 cm^-3 and an extended warm partially-ionised zone, so the
  low-ionisation ions (S+, N+, O0) are strongly enhanced relative to H+ (Dopita & Sutherland 1995,
  ApJ 455, 468; Allen et al. 2008, ApJS 178, 20: shocks give [SII]/Halpha > 0.4 and
  [OI]6300/Halpha > 0.06).
* Every class is kept inside the envelope of observed line ratios of ``physics.md`` section 3 by
  rejection (draws outside it are redrawn).

Fixed atomic ratios hold by construction: [OIII]5007/4959 = 2.98 and [NII]6583/6548 = 2.94
(same upper level; pyneb's transition probabilities), and Halpha/Hbeta is case B at the model's
temperature. The observation model (the target domain) is in :mod:`.nebulae_observe`.

Fluxes are in units of 1e-20 erg s^-1 cm^-2 (the PHANGS-MUSE catalogue unit).
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..cache import cache_dir, call_hash

# Line name -> air wavelength [Angstrom]. [NI]5200 is the 5198+5200 doublet.
LINES = {
    "HB4861": 4861.33, "OIII4958": 4958.91, "OIII5006": 5006.84, "NI5200": 5199.0, "NII5754": 5754.59,
    "OI6300": 6300.30, "OI6363": 6363.78, "NII6548": 6548.05, "HA6562": 6562.80, "NII6583": 6583.45,
    "SII6716": 6716.44, "SII6730": 6730.82, "SIII9068": 9068.60,
}
LINE_NAMES = tuple(LINES)
CLASSES = ("HII", "PN", "SNR")
OIII_DOUBLET_RATIO = 2.98  # [OIII]5007/4959 (Storey & Zeippen 2000)
NII_DOUBLET_RATIO = 2.94   # [NII]6583/6548 (Storey & Zeippen 2000)

# log10 line-ratio envelopes per class (physics.md section 3, widened by ~0.2 dex): a draw outside
# is redrawn. Keys: ratio name -> (low, high).
ENVELOPES = {
    "HII": {"log_oiii_hb": (-1.2, 0.5), "log_nii_ha": (-0.9, -0.2), "log_sii_ha": (-1.2, -0.35)},
    "PN": {"log_oiii_hb": (0.4, 1.35), "log_nii_ha": (-1.4, 0.6), "log_sii_ha": (-2.5, -0.6)},
    "SNR": {"log_oiii_hb": (-0.5, 1.0), "log_nii_ha": (-0.6, 0.4), "log_sii_ha": (-0.45, 0.5),
            "log_oi_ha": (-1.4, -0.1)},
}


# ============================================================================ HII: MAPPINGS grid
def nebulabayes_grid_path() -> Path:
    """The HII grid file of the installed NebulaBayes package (found without importing it)."""
    spec = importlib.util.find_spec("NebulaBayes")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("NebulaBayes is not installed; `pip install NebulaBayes` provides the MAPPINGS 5 grid.")
    path = Path(list(spec.submodule_search_locations)[0]) / "grids" / "NB_HII_grid.fits.gz"
    if not path.exists():
        raise FileNotFoundError(f"The NebulaBayes HII grid is missing at {path}.")
    return path


# Grid columns for each of our lines (None: from a fixed atomic ratio).
_GRID_COLUMNS = {
    "HB4861": "Hbeta", "OIII5006": "OIII5007", "NI5200": "NI5198_5200", "NII5754": "NII5755",
    "OI6300": "OI6300", "OI6363": "OI6364", "HA6562": "Halpha", "NII6583": "NII6583",
    "SII6716": "SII6716", "SII6730": "SII6731", "SIII9068": "SIII9069",
}
GRID_AXES = ("log U", "log P/k", "12 + log O/H")


@lru_cache(maxsize=1)
def _hii_interpolator():
    from astropy.table import Table
    from scipy.interpolate import RegularGridInterpolator

    table = Table.read(nebulabayes_grid_path())
    axes = [np.unique(np.asarray(table[name], dtype=float)) for name in GRID_AXES]
    shape = tuple(len(axis) for axis in axes)
    index = tuple(np.searchsorted(axis, np.asarray(table[name], dtype=float)) for axis, name in zip(axes, GRID_AXES))
    cube = np.full(shape + (len(_GRID_COLUMNS),), np.nan)
    for k, column in enumerate(_GRID_COLUMNS.values()):
        # Masked entries are fluxes below the grid's floor of 1e-5 Hbeta: filled at 1e-6.
        values = table[column].filled(1e-6) if hasattr(table[column], "filled") else table[column]
        flux = np.asarray(values, dtype=float) / np.asarray(table["Hbeta"], dtype=float)
        cube[index + (k,)] = np.log10(np.maximum(flux, 1e-12))
    if np.isnan(cube).any():
        raise ValueError("The NebulaBayes HII grid is not a full rectilinear grid.")
    return RegularGridInterpolator(axes, cube), axes


def hii_grid_axes() -> dict:
    """The grid's axis values: {"log U": [...], "log P/k": [...], "12 + log O/H": [...]}."""
    return {name: axis.copy() for name, axis in zip(GRID_AXES, _hii_interpolator()[1])}


def hii_line_fluxes(log_u, log_pk, oh) -> dict[str, np.ndarray]:
    """Line fluxes relative to Hbeta of HII regions interpolated in the MAPPINGS 5 grid.

    log_u: ionisation parameter [dex]; log_pk: log10 of pressure P/k [K cm^-3];
    oh: 12 + log10(O/H). Returns {line: flux / F(Hbeta)} for every line in :data:`LINES`.
    """
    interpolator, _ = _hii_interpolator()
    points = np.column_stack([np.atleast_1d(log_u), np.atleast_1d(log_pk), np.atleast_1d(oh)]).astype(float)
    logs = interpolator(points)
    fluxes = {line: 10.0 ** logs[:, k] for k, line in enumerate(_GRID_COLUMNS)}
    fluxes["OIII4958"] = fluxes["OIII5006"] / OIII_DOUBLET_RATIO
    fluxes["NII6548"] = fluxes["NII6583"] / NII_DOUBLET_RATIO
    return {line: fluxes[line] for line in LINE_NAMES}


# ============================================================================ PN, SNR: pyneb
@lru_cache(maxsize=1)
def _atoms():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pyneb

        atoms = {ion: pyneb.Atom(ion[:-1], int(ion[-1])) for ion in ("O3", "N2", "S2", "S3", "O1", "N1")}
        atoms["H1"] = pyneb.RecAtom("H", 1)
    return atoms


# line -> (ion, pyneb wavelengths whose emissivities add up)
_PYNEB_LINES = {
    "OIII5006": ("O3", (5007,)), "OIII4958": ("O3", (4959,)), "NI5200": ("N1", (5198, 5200)),
    "NII5754": ("N2", (5755,)), "OI6300": ("O1", (6300,)), "OI6363": ("O1", (6364,)),
    "NII6548": ("N2", (6548,)), "NII6583": ("N2", (6584,)), "SII6716": ("S2", (6716,)),
    "SII6730": ("S2", (6731,)), "SIII9068": ("S3", (9069,)),
}


# Emissivities are tabulated once on a (Te, log ne) grid and interpolated (bilinear in log
# emissivity; errors < 1 %): solving level populations per object would take seconds.
TE_GRID = np.linspace(4000.0, 30000.0, 27)
LOG_NE_GRID = np.linspace(0.0, 5.5, 23)


def _emissivity_arrays() -> dict[str, np.ndarray]:
    """log10(emissivity / emissivity(Hbeta)) on (TE_GRID, LOG_NE_GRID) for each line; pyneb's
    first use of an ion takes seconds, so the tables are cached on disk (by pyneb version)."""
    import pyneb

    key = call_hash(kind="nebula-emissivities", pyneb=pyneb.__version__, te=TE_GRID.tolist(),
                    ne=LOG_NE_GRID.tolist(), lines={k: list(v[1]) for k, v in _PYNEB_LINES.items()})
    path = cache_dir() / f"emissivities-{key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}
        except (OSError, ValueError):
            pass  # a broken cache file is rebuilt
    atoms = _atoms()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        te, ne = TE_GRID, 10.0 ** LOG_NE_GRID
        hbeta = atoms["H1"].getEmissivity(te, ne, label="4_2")
        tables = {"HA6562": np.log10(atoms["H1"].getEmissivity(te, ne, label="3_2") / hbeta)}
        for line, (ion, waves) in _PYNEB_LINES.items():
            tables[line] = np.log10(sum(atoms[ion].getEmissivity(te, ne, wave=w) for w in waves) / hbeta)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part.npz")
    np.savez(partial, **tables)
    os.replace(partial, path)
    return tables


@lru_cache(maxsize=1)
def _emissivity_tables():
    from scipy.interpolate import RegularGridInterpolator

    return {line: RegularGridInterpolator((TE_GRID, LOG_NE_GRID), table)
            for line, table in _emissivity_arrays().items()}


def emissivity_line_fluxes(te, ne, abundances: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Line fluxes relative to Hbeta of a one-zone nebula from pyneb emissivities.

    te: electron temperature [K] (4000-30000); ne: electron density [cm^-3] (1-3e5); abundances:
    ionic abundances relative to H+ keyed by ion ("O3" = O++, "N2" = N+, "S2" = S+, "S3" = S++,
    "O1" = O0, "N1" = N0). Halpha/Hbeta is case B at (te, ne).
    """
    te, ne = np.atleast_1d(np.asarray(te, float)), np.atleast_1d(np.asarray(ne, float))
    points = np.column_stack([np.clip(te, TE_GRID[0], TE_GRID[-1]),
                              np.clip(np.log10(ne), LOG_NE_GRID[0], LOG_NE_GRID[-1])])
    tables = _emissivity_tables()
    fluxes = {"HB4861": np.ones_like(te), "HA6562": 10.0 ** tables["HA6562"](points)}
    for line, (ion, _) in _PYNEB_LINES.items():
        fluxes[line] = np.asarray(abundances[ion]) * 10.0 ** tables[line](points)
    return {line: fluxes[line] for line in LINE_NAMES}


def _log_uniform(rng, low, high, n):
    return 10.0 ** rng.uniform(np.log10(low), np.log10(high), n)


def draw_pn(rng: np.random.Generator, n: int) -> tuple[dict, dict]:
    """Planetary nebulae: (line fluxes / Hbeta, physical parameters). Te 10-20 kK, ne 10^3-10^4,
    O++/H+ 1-5e-4 with O+/O++ 0.02-0.3 (high excitation), N/O 0.1-2 (type I PN are N-rich)."""
    te = rng.uniform(1.0e4, 2.0e4, n)
    ne = _log_uniform(rng, 1e3, 1e4, n)
    o3 = _log_uniform(rng, 5e-5, 5e-4, n)
    o2 = o3 * rng.uniform(0.02, 0.3, n)
    n_over_o = _log_uniform(rng, 0.1, 2.0, n)
    abundances = {"O3": o3, "O1": o3 * _log_uniform(rng, 1e-3, 2e-2, n), "N2": o2 * n_over_o,
                  "N1": o2 * n_over_o * _log_uniform(rng, 0.005, 0.05, n),
                  "S2": _log_uniform(rng, 5e-8, 1e-6, n), "S3": _log_uniform(rng, 5e-7, 5e-6, n)}
    return emissivity_line_fluxes(te, ne, abundances), {"te": te, "ne": ne, "o_ratio": o3}


def draw_snr(rng: np.random.Generator, n: int) -> tuple[dict, dict]:
    """Supernova remnants (radiative shocks, 100-500 km/s): the cooling zone radiates at Te
    8-20 kK and ne 50-1000 cm^-3; S+, N+ and O0 are abundant relative to H+ in the warm partially
    ionised zone, which lifts [SII], [NII], [OI] relative to Halpha (Allen et al. 2008)."""
    te = rng.uniform(8.0e3, 2.0e4, n)
    ne = _log_uniform(rng, 50.0, 1000.0, n)
    o3 = _log_uniform(rng, 1.5e-5, 3e-4, n)
    n2 = _log_uniform(rng, 1.5e-5, 1.2e-4, n)
    abundances = {"O3": o3, "O1": _log_uniform(rng, 2e-5, 4e-4, n), "N2": n2,
                  "N1": n2 * _log_uniform(rng, 0.05, 0.3, n),
                  "S2": _log_uniform(rng, 3e-6, 1.5e-5, n), "S3": _log_uniform(rng, 5e-7, 5e-6, n)}
    return emissivity_line_fluxes(te, ne, abundances), {"te": te, "ne": ne, "o_ratio": o3}


def draw_hii(rng: np.random.Generator, n: int, oh: np.ndarray | None = None) -> tuple[dict, dict]:
    """HII regions from the MAPPINGS grid: log U -3.75..-2.25, log P/k 4.6..6.6 (ne ~ 2-200
    cm^-3), 12 + log O/H 8.0..9.1 uniform unless ``oh`` (one value per region) is given."""
    log_u = rng.uniform(-3.75, -2.25, n)
    log_pk = rng.uniform(4.6, 6.6, n)
    oh = rng.uniform(8.0, 9.1, n) if oh is None else np.asarray(oh, float)
    return hii_line_fluxes(log_u, log_pk, oh), {"log_u": log_u, "log_pk": log_pk, "oh": oh}


DRAWS = {"HII": draw_hii, "PN": draw_pn, "SNR": draw_snr}


# ============================================================================ ratios
def log_ratio(numerator, denominator):
    """log10(numerator / denominator), NaN where either is not positive."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    with np.errstate(all="ignore"):
        good = (numerator > 0) & (denominator > 0)
        return np.where(good, np.log10(np.where(good, numerator, 1.0) / np.where(good, denominator, 1.0)), np.nan)


def line_ratios(fluxes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The diagnostic log10 ratios (see :data:`RATIO_TITLES`) from line fluxes."""
    sii = np.asarray(fluxes["SII6716"], float) + np.asarray(fluxes["SII6730"], float)
    return {
        "log_oiii_hb": log_ratio(fluxes["OIII5006"], fluxes["HB4861"]),
        "log_nii_ha": log_ratio(fluxes["NII6583"], fluxes["HA6562"]),
        "log_sii_ha": log_ratio(sii, fluxes["HA6562"]),
        "log_oi_ha": log_ratio(fluxes["OI6300"], fluxes["HA6562"]),
        "log_sii_ratio": log_ratio(fluxes["SII6716"], fluxes["SII6730"]),
        "log_siii_ha": log_ratio(fluxes["SIII9068"], fluxes["HA6562"]),
        "log_ha_hb": log_ratio(fluxes["HA6562"], fluxes["HB4861"]),
    }


RATIO_TITLES = {
    "log_oiii_hb": "log [OIII]5007/Hβ", "log_nii_ha": "log [NII]6583/Hα", "log_sii_ha": "log [SII]6716+31/Hα",
    "log_oi_ha": "log [OI]6300/Hα", "log_sii_ratio": "log [SII]6716/6731", "log_siii_ha": "log [SIII]9069/Hα",
    "log_ha_hb": "log Hα/Hβ",
}


def inside_envelope(name: str, fluxes: dict) -> np.ndarray:
    """Which draws of class ``name`` lie inside its line-ratio envelope (:data:`ENVELOPES`)."""
    ratios = line_ratios(fluxes)
    keep = np.ones(len(fluxes["HB4861"]), bool)
    for ratio, (low, high) in ENVELOPES[name].items():
        keep &= (ratios[ratio] >= low) & (ratios[ratio] <= high)
    return keep


def draw_class(name: str, rng: np.random.Generator, n: int, oh_sampler=None) -> tuple[dict, dict]:
    """``n`` nebulae of class ``name`` inside the class envelope: (fluxes / Hbeta, parameters).
    ``oh_sampler(rng, m)`` draws 12 + log O/H of HII regions (default: uniform 8.0-9.1)."""
    fluxes_parts, params_parts, have = [], [], 0
    for _ in range(50):
        if have >= n:
            break
        m = max(64, int(1.6 * (n - have)))
        if name == "HII":
            fluxes, params = draw_hii(rng, m, None if oh_sampler is None else oh_sampler(rng, m))
        else:
            fluxes, params = DRAWS[name](rng, m)
        keep = inside_envelope(name, fluxes)
        fluxes_parts.append({k: v[keep] for k, v in fluxes.items()})
        params_parts.append({k: v[keep] for k, v in params.items()})
        have += int(keep.sum())
    fluxes = {k: np.concatenate([p[k] for p in fluxes_parts])[:n] for k in LINE_NAMES}
    params = {k: np.concatenate([p[k] for p in params_parts])[:n] for k in params_parts[0]}
    if len(fluxes["HB4861"]) < n:
        raise RuntimeError(f"Could not draw {n} {name} inside the class envelope.")
    return fluxes, params
