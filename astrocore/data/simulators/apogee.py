"""APOGEE-like H-band spectra on the real 7214-pixel combined-spectrum grid (vacuum), R = 22500.

The spectra come from the line-synthesis engine in :mod:`astrocore.data.synthesis` with a line
list made of the real named lines of the H band (Mg I, Si I, Al I, K I, Mn I, Ca I, Ti I, Ni I,
Fe I, Na I, C I, converted from air to vacuum), the Brackett series, OH (vibration-rotation,
Delta v = 2), CO (second overtone, Delta v = 3, with its band heads at 15582, 15779, 15982, 16189,
16397, 16610 A) and CN (red system, Delta v = -1) lines from molecular constants, plus a
deterministic pseudo list of weak atomic lines drawn with a fixed internal seed (part of
:data:`VERSION`).

The Payne-style grid of the GANDALF paper: chemical "fingerprints" (a full set of abundances per
star) are each rendered at every (Teff, log g) of a regular grid, so that Teff and log g can be
disentangled from chemistry. Each element acts only on its own lines (and molecules); [Fe/H] and
[alpha/Fe] also set the electron donors (and so the continuous opacity).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from astropy.table import Table

from ..cache import cached_dataset
from ..dataset import DataError, Dataset
from .linelists import LineList, air_to_vacuum, diatomic_band_lines, hydrogen_lines, pseudo_atomic_lines
from .stellar_labels import check_snr, label_arrays, scaled_abundances, simulated_dataset
from .synthesis import Spectrograph, Synthesizer

VERSION = "apogee-synth-1.0"
LINELIST_SEED = 15168  # fixed: the pseudo line list is part of the generator version
APOGEE_RESOLVING_POWER = 22500.0
APOGEE_ABUNDANCES = ("c", "n", "o", "mg", "al", "si", "ca", "ti", "mn", "ni")
APOGEE_CHIPS = ((322, 3242), (3648, 6048), (6412, 8306))  # pixel index ranges (end exclusive)
APOGEE_BAND = (15150.0, 16950.0)
# profile lattice: nodes at the default grid (Teff 3200 + 200 i, log g 0.2 j)
APOGEE_LATTICE = (3200.0, 200.0, 0.0, 0.2)
DEFAULT_TEFF_GRID = 3200.0 + 200.0 * np.arange(15)
DEFAULT_LOGG_GRID = np.round(0.2 * np.arange(14), 6)
LINE_RANGE = (15080.0, 17020.0)
_ELEMENT_OF = {"c": "C", "n": "N", "o": "O", "mg": "Mg", "al": "Al", "si": "Si", "ca": "Ca",
               "ti": "Ti", "mn": "Mn", "ni": "Ni"}


def apogee_wavelength() -> np.ndarray:
    """The 7214-pixel APOGEE grid [A, vacuum]: 10**(4.179 + 6e-6 i) over the three chips."""
    index = np.concatenate([np.arange(a, b) for a, b in APOGEE_CHIPS])
    return 10.0 ** (4.179 + 6e-6 * index)


# ----------------------------------------------------------------------------- line list
# (air wavelength [A], species, chi [eV], log gf, log gamma6) of named H-band lines
NAMED_LINES = [
    (15740.716, "Mg I", 5.931, -0.262, -6.9),
    (15748.988, "Mg I", 5.932, 0.140, -6.9),
    (15765.842, "Mg I", 5.933, 0.410, -6.9),
    (15954.477, "Mg I", 6.588, -0.807, -6.9),
    (15376.831, "Si I", 6.223, -0.700, -7.0),
    (15557.779, "Si I", 5.964, -0.820, -7.0),
    (15888.409, "Si I", 5.082, -1.950, -7.1),
    (15960.063, "Si I", 5.984, 0.130, -7.0),
    (16060.009, "Si I", 5.954, -0.450, -7.0),
    (16094.787, "Si I", 5.964, -0.090, -7.0),
    (16215.670, "Si I", 5.954, -0.600, -7.0),
    (16380.175, "Si I", 5.964, -0.520, -7.0),
    (16680.770, "Si I", 5.984, -0.140, -7.0),
    (16718.957, "Al I", 4.085, 0.290, -7.2),
    (16750.564, "Al I", 4.087, 0.550, -7.2),
    (16763.359, "Al I", 4.087, -0.480, -7.2),
    (15163.067, "K I", 2.670, 0.680, -7.2),
    (15168.376, "K I", 2.670, 0.480, -7.2),
    (15159.200, "Mn I", 4.889, 0.620, -7.2),
    (15217.700, "Mn I", 4.889, 0.390, -7.2),
    (15262.400, "Mn I", 4.889, 0.250, -7.2),
    (16150.763, "Ca I", 4.532, -0.237, -7.2),
    (16155.236, "Ca I", 4.532, -0.740, -7.2),
    (16157.364, "Ca I", 4.554, -0.210, -7.2),
    (16197.075, "Ca I", 4.535, 0.089, -7.2),
    (15543.756, "Ti I", 1.879, -1.120, -7.6),
    (15602.842, "Ti I", 2.267, -1.640, -7.6),
    (15715.573, "Ti I", 1.873, -1.250, -7.6),
    (16635.161, "Ti I", 2.345, -1.580, -7.6),
    (15605.680, "Ni I", 5.305, -0.560, -7.2),
    (16584.439, "Ni I", 5.300, -0.370, -7.2),
    (16589.295, "Ni I", 5.469, -0.350, -7.2),
    (16673.711, "Ni I", 6.030, 0.040, -7.2),
    (16815.471, "Ni I", 5.305, -0.600, -7.2),
    (15207.526, "Fe I", 5.385, 0.080, -7.2),
    (15294.560, "Fe I", 5.308, 0.600, -7.2),
    (15621.654, "Fe I", 5.539, 0.400, -7.2),
    (15631.948, "Fe I", 5.352, 0.150, -7.2),
    (15662.013, "Fe I", 5.828, 0.370, -7.2),
    (15692.750, "Fe I", 5.385, 0.040, -7.2),
    (15980.725, "Fe I", 6.259, 0.190, -7.2),
    (16040.654, "Fe I", 5.874, 0.100, -7.2),
    (16165.029, "Fe I", 6.319, 0.690, -7.2),
    (16231.649, "Fe I", 6.380, 0.640, -7.2),
    (16444.816, "Fe I", 5.826, 0.300, -7.2),
    (16373.860, "Na I", 3.753, -0.500, -7.3),
    (16388.850, "Na I", 3.753, -0.800, -7.3),
    (16890.380, "C I", 9.003, 0.440, -7.0),
    (16021.700, "C I", 9.631, -0.100, -7.0),
    (15469.816, "S I", 8.046, -0.050, -7.0),
    (15475.616, "S I", 8.046, -0.520, -7.0),
    (15478.482, "S I", 8.046, 0.180, -7.0),
    (15680.100, "Cr I", 4.697, 0.150, -7.3),
    (15860.200, "Cr I", 4.697, 0.000, -7.3),
    (15924.800, "V I", 2.138, -1.100, -7.6),
    (16757.600, "Co I", 3.410, -1.000, -7.4),
]

PSEUDO_SPECIES = {
    "Fe I": 0.45, "Fe II": 0.02, "Si I": 0.06, "Ni I": 0.06, "Ti I": 0.05, "Ca I": 0.04,
    "Cr I": 0.05, "Mg I": 0.03, "Mn I": 0.02, "Co I": 0.03, "V I": 0.03, "Al I": 0.01,
    "C I": 0.02, "Na I": 0.01, "K I": 0.005, "S I": 0.01, "O I": 0.005, "N I": 0.005,
}


def _chi_model(rng, name, n):
    """Lower excitation potentials [eV]: H-band lines of metals mostly come from high levels."""
    if name == "C I":
        return rng.uniform(7.5, 9.8, n)
    if name in ("N I", "O I"):
        return rng.uniform(10.0, 12.0, n)
    if name == "S I":
        return rng.uniform(6.5, 9.0, n)
    if name.endswith(" II"):
        return 4.0 + 5.0 * rng.beta(2.0, 2.0, n)
    if name in ("Ti I", "V I", "Cr I"):
        return np.where(rng.uniform(size=n) < 0.15, 0.8 + 2.2 * rng.beta(1.5, 2.0, n),
                        3.5 + 2.5 * rng.beta(2.0, 2.0, n))
    return 3.0 + 3.8 * rng.beta(3.0, 1.6, n)


def _loggf_model(rng, name, chi):
    """log gf: a steep distribution dominated by weak lines, with a tail of moderate ones; the
    low-excitation (chi < 4.5 eV) transitions that fall in the H band are weak (intercombination-like)."""
    n = chi.size
    if name in ("C I", "N I", "O I", "S I"):
        return rng.uniform(-2.6, -0.4, n)
    return np.clip(-2.0 - rng.exponential(1.0, n) - 0.9 * np.clip(4.5 - chi, 0.0, None), -8.0, 0.8)


def _co_lines() -> LineList:
    """CO second overtone (Delta v = 3) bands (3,0)...(9,6) of the X1Sigma+ state, P and R branches.
    Band oscillator strengths follow the harmonic overtone scaling (v+1)(v+2)(v+3)/6."""
    x = dict(we=2169.81, wexe=13.288, weye=0.0105, Be=1.93128, ae=0.017504, De=6.12e-6)
    branches = {"P": (-1, lambda J: J.astype(float)), "R": (1, lambda J: J + 1.0)}
    bands = [(v + 3, v, 8.0e-10 * (v + 1) * (v + 2) * (v + 3) / 6.0) for v in range(7)]
    return diatomic_band_lines("CO", 0.0, x, x, bands, branches, 120, [(0.0, 0.0, 1.0)],
                               "vacuum", LINE_RANGE)


def _oh_lines() -> LineList:
    """OH vibration-rotation (Meinel, Delta v = 2) bands (2,0)...(6,4) of X2Pi, P and R branches of
    the two spin-orbit components (2Pi3/2 lowest; 2Pi1/2 126 cm^-1 higher), Lambda-doubled."""
    x = dict(we=3737.76, wexe=84.88, weye=0.540, Be=18.911, ae=0.7242, De=1.94e-3)
    branches = {"P": (-1, lambda J: J.astype(float)), "R": (1, lambda J: J + 1.0)}
    bands = [(v + 2, v, 1.0e-6 * (v + 1) * (v + 2) / 2.0) for v in range(5)]
    spins = [(0.0, 0.0, 0.5), (0.35, 126.0, 0.5)]
    return diatomic_band_lines("OH", 0.0, x, x, bands, branches, 40, spins, "vacuum", LINE_RANGE,
                               lambda_doubling=0.12)


def _cn_lines() -> LineList:
    """CN red system (A2Pi - X2Sigma+), Delta v = -1 sequence (0,1)...(5,6): P, Q and R branches of
    the two spin-orbit sub-bands (A' = -52.6 cm^-1)."""
    lower = dict(we=2068.6, wexe=13.09, Be=1.8997, ae=0.0174, De=6.4e-6)
    upper = dict(we=1812.6, wexe=12.61, Be=1.7151, ae=0.0171, De=5.9e-6)
    branches = {"P": (-1, lambda J: (J - 1.0) / 2.0), "Q": (0, lambda J: (2 * J + 1) / 2.0),
                "R": (1, lambda J: (J + 2.0) / 2.0)}
    bands = [(v, v + 1, 1.0e-3 * (1.0 + 0.15 * v)) for v in range(6)]
    lists = [diatomic_band_lines("CN", 9117.0 + offset, upper, lower, bands, branches, 110,
                                 [(0.0, 0.0, 0.5)], "vacuum", LINE_RANGE) for offset in (26.3, -26.3)]
    return LineList.concatenate(lists)


@lru_cache(maxsize=1)
def apogee_line_list() -> LineList:
    """The full APOGEE line list (vacuum wavelengths), identical for every call."""
    wl, sp, chi, loggf, g6 = zip(*NAMED_LINES)
    named = LineList.make(air_to_vacuum(np.array(wl)), np.array(sp), chi, loggf, g6, -5.5,
                          label=[f"{s} {w:.1f}" for s, w in zip(sp, wl)])
    pseudo = pseudo_atomic_lines(LINE_RANGE[0], LINE_RANGE[1], 2600, LINELIST_SEED,
                                 PSEUDO_SPECIES, _chi_model, _loggf_model)
    brackett = hydrogen_lines(4, np.arange(11, 31), medium="vacuum")
    return LineList.concatenate([named, pseudo, brackett, _co_lines(), _oh_lines(), _cn_lines()])


@lru_cache(maxsize=1)
def apogee_synthesizer() -> Synthesizer:
    """The APOGEE synthesizer (line list + spectrograph + profile lattice), built once."""
    spectrograph = Spectrograph(lambda x: 10.0 ** (4.179 + 6e-6 * x), APOGEE_CHIPS,
                                APOGEE_RESOLVING_POWER, oversample=4)
    return Synthesizer(apogee_line_list(), spectrograph, APOGEE_BAND, APOGEE_LATTICE,
                       window_cap=25.0, hydrogen_window_cap=80.0, cache_size=64)


# ----------------------------------------------------------------------------- API
def render_apogee(labels) -> np.ndarray:
    """Noiseless APOGEE spectra (n, 7214) float32 for labels teff [K], logg, feh, afe and the
    [X/Fe] columns c_fe, n_fe, o_fe, mg_fe, al_fe, si_fe, ca_fe, ti_fe, mn_fe, ni_fe (dex).

    ``labels`` is a dict of arrays (or scalars) or an astropy Table; any Teff/logg is allowed.
    Elements not listed (Na, S, K, V, Cr, Co, Fe) follow [Fe/H] (S also [alpha/Fe]); [Fe/H] and
    [alpha/Fe] also set the electron donors, so they act on the continuum opacity too.
    """
    xfe_names = tuple(f"{name}_fe" for name in APOGEE_ABUNDANCES)
    teff, logg, feh, afe, *xfe = label_arrays(labels, ("teff", "logg", "feh", "afe") + xfe_names)
    if np.any(teff < 1500) or np.any(teff > 20000):
        raise DataError("teff must be in Kelvin, between 1500 and 20000 K; got "
                        f"{teff.min():.0f}-{teff.max():.0f}.")
    overrides = {_ELEMENT_OF[name]: feh + x for name, x in zip(APOGEE_ABUNDANCES, xfe)}
    xh = scaled_abundances(feh, afe, overrides)
    return apogee_synthesizer().render(teff, logg, feh, afe, xh)


def sample_fingerprints(n_fingerprints: int, rng) -> dict:
    """Chemical fingerprints: [Fe/H], [alpha/Fe] and [X/Fe] of each APOGEE_ABUNDANCES element.

    [Fe/H] from a thin-disc (75 %, N(-0.1, 0.2)) + thick-disc (25 %, N(-0.5, 0.25)) mixture clipped
    to -1.0..+0.4; [alpha/Fe] on the two sequences (thin: 0.02 - 0.1 [Fe/H], thick: ~0.3 falling
    above [Fe/H] = -0.6) with 0.04 dex scatter; alpha elements O, Mg, Si, Ca, Ti = [alpha/Fe] +
    N(0, 0.05); C and N anti-correlated by CN processing of a random mixing fraction; Al follows
    [alpha/Fe]/2, Mn rises with [Fe/H], Ni near solar.
    """
    n = int(n_fingerprints)
    thick = rng.uniform(size=n) < 0.25
    feh = np.where(thick, rng.normal(-0.5, 0.25, n), rng.normal(-0.1, 0.2, n))
    feh = np.clip(feh, -1.0, 0.4)
    afe = np.where(thick, 0.30 - 0.25 * np.clip(feh + 0.6, 0.0, None), 0.02 - 0.10 * feh)
    afe = afe + rng.normal(0.0, 0.04, n)
    mixing = rng.uniform(size=n)
    out = {"feh": feh, "afe": afe}
    for name in ("o", "mg", "si", "ca", "ti"):
        out[f"{name}_fe"] = afe + rng.normal(0.0, 0.05, n)
    out["c_fe"] = 0.05 - 0.30 * mixing + rng.normal(0.0, 0.06, n)
    out["n_fe"] = 0.05 + 0.45 * mixing + rng.normal(0.0, 0.07, n)
    out["al_fe"] = 0.5 * afe + rng.normal(0.0, 0.08, n)
    out["mn_fe"] = -0.05 + 0.25 * feh + rng.normal(0.0, 0.05, n)
    out["ni_fe"] = 0.02 + 0.05 * afe + rng.normal(0.0, 0.04, n)
    order = ["feh", "afe"] + [f"{name}_fe" for name in APOGEE_ABUNDANCES]
    return {key: np.round(out[key], 4) for key in order}


def simulate_apogee(n_fingerprints: int = 200, teff_grid=None, logg_grid=None, seed: int = 0,
                    snr=None, use_cache: bool = True) -> Dataset:
    """An APOGEE-like Dataset: every fingerprint rendered at every (Teff, log g) of the grid.

    Defaults: Teff 3200..6000 K step 200 (15 values), log g 0.0..2.6 step 0.2 (14 values), so
    n_fingerprints * 210 spectra of 7214 pixels (vacuum Angstrom), continuum normalised, float32.
    Rows are ordered fingerprint by fingerprint, then Teff, then log g. labels: id, fingerprint,
    teff, logg, feh, afe and c_fe ... ni_fe (dex). ``snr``: Gaussian noise sigma = 1/snr.
    """
    n_fp = int(n_fingerprints)
    if n_fp < 1:
        raise DataError(f"n_fingerprints must be a positive integer; got {n_fingerprints}.")
    teff_grid = DEFAULT_TEFF_GRID if teff_grid is None else np.atleast_1d(np.asarray(teff_grid, float))
    logg_grid = DEFAULT_LOGG_GRID if logg_grid is None else np.atleast_1d(np.asarray(logg_grid, float))
    if teff_grid.size == 0 or logg_grid.size == 0:
        raise DataError("teff_grid and logg_grid must not be empty.")
    snr = check_snr(snr)
    params = {"n_fingerprints": n_fp, "teff_grid": [float(t) for t in teff_grid],
              "logg_grid": [float(g) for g in logg_grid], "seed": int(seed), "snr": snr}

    def build() -> Dataset:
        label_seq, noise_seq = np.random.SeedSequence(int(seed)).spawn(2)
        chem = sample_fingerprints(n_fp, np.random.default_rng(label_seq))
        n_grid = teff_grid.size * logg_grid.size
        tt, gg = np.meshgrid(teff_grid, logg_grid, indexing="ij")
        labels = {
            "id": np.arange(n_fp * n_grid),
            "fingerprint": np.repeat(np.arange(n_fp), n_grid),
            "teff": np.tile(tt.ravel(), n_fp),
            "logg": np.tile(gg.ravel(), n_fp),
        }
        for key, values in chem.items():
            labels[key] = np.repeat(values, n_grid)
        table = Table(labels)
        for name in APOGEE_ABUNDANCES:
            table[f"{name}_fe"].unit = "dex"
        return simulated_dataset(render_apogee(labels), apogee_wavelength(), table, "apogee", VERSION, seed,
                                 params, snr, np.random.default_rng(noise_seq))

    return cached_dataset("apogee", VERSION, params, build, use_cache)
