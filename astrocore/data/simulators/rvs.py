"""Gaia RVS-like spectra: 8460-8700 Angstrom (air), 0.1 A pixels, R = 11500.

The spectra come from the line-synthesis engine in :mod:`astrocore.data.synthesis` with a line
list made of the real named lines of the region (Ca II triplet, Fe I, Si I, Ti I, Mg I, N I, S I),
the Paschen series, TiO (red-degraded bands with heads at 8432, 8442 and 8452 A and their long
tails across the range) and CN red-system lines from molecular constants, plus a deterministic
pseudo list of weak atomic lines drawn with a fixed internal seed (part of :data:`VERSION`).

Labels: Teff [K], log g [dex], [Fe/H] (= [M/H]) and [alpha/Fe] (O, Mg, Si, S, Ca, Ti scale with
[Fe/H] + [alpha/Fe]); ranges are those of the GANDALF paper's MARCS grid.
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

VERSION = "rvs-synth-1.0"
LINELIST_SEED = 846870  # fixed: the pseudo line list is part of the generator version
RVS_RESOLVING_POWER = 11500.0
RVS_WAVELENGTH = 8460.0 + 0.1 * np.arange(2400)  # Angstrom, air
RVS_LABEL_RANGES = {
    "teff": (2600.0, 8000.0),
    "logg": (-0.5, 5.5),
    "feh": (-5.0, 1.0),
    "afe": (-0.4, 0.8),
}
RVS_BAND = (8460.0, 8700.0)
# profile lattice: nodes every 200 K in Teff and 0.5 dex in log g
RVS_LATTICE = (2600.0, 200.0, -0.5, 0.5)
LINE_RANGE = (8380.0, 8780.0)  # lines outside the pixels still contribute wings

# ----------------------------------------------------------------------------- line list
# (air wavelength [A], species, chi [eV], log gf, log gamma6) of the named lines of the region
NAMED_LINES = [
    (8498.023, "Ca II", 1.692, -1.312, -7.30),
    (8542.091, "Ca II", 1.700, -0.362, -7.30),
    (8662.141, "Ca II", 1.692, -0.623, -7.30),
    (8468.407, "Fe I", 2.223, -2.072, -7.55),
    (8514.072, "Fe I", 2.198, -2.229, -7.55),
    (8515.108, "Fe I", 3.018, -2.073, -7.50),
    (8526.669, "Fe I", 4.913, -0.760, -7.30),
    (8571.804, "Fe I", 5.010, -1.310, -7.30),
    (8582.257, "Fe I", 2.990, -2.134, -7.50),
    (8592.951, "Fe I", 4.956, -1.040, -7.30),
    (8598.829, "Fe I", 4.386, -1.090, -7.40),
    (8611.803, "Fe I", 2.845, -1.926, -7.50),
    (8613.935, "Fe I", 4.988, -1.200, -7.30),
    (8621.601, "Fe I", 2.949, -2.321, -7.50),
    (8632.412, "Fe I", 4.103, -2.200, -7.40),
    (8674.746, "Fe I", 2.831, -1.800, -7.50),
    (8688.624, "Fe I", 2.176, -1.212, -7.55),
    (8699.454, "Fe I", 4.955, -0.380, -7.30),
    (8536.165, "Si I", 5.964, -0.950, -7.20),
    (8556.777, "Si I", 5.875, -0.800, -7.20),
    (8648.465, "Si I", 6.206, -0.200, -7.10),
    (8518.352, "Ti I", 1.882, -1.030, -7.60),
    (8675.372, "Ti I", 1.067, -1.670, -7.60),
    (8682.980, "Ti I", 1.053, -1.940, -7.60),
    (8692.331, "Ti I", 1.046, -2.240, -7.60),
    (8717.825, "Mg I", 5.933, -0.866, -7.00),
    (8736.019, "Mg I", 5.946, -0.340, -7.00),
    (8629.235, "N I", 10.690, 0.080, -7.00),
    (8680.282, "N I", 10.336, 0.350, -7.00),
    (8683.403, "N I", 10.330, 0.090, -7.00),
    (8686.149, "N I", 10.326, -0.300, -7.00),
    (8703.247, "N I", 10.326, -0.320, -7.00),
    (8711.703, "N I", 10.330, -0.230, -7.00),
    (8693.931, "S I", 7.870, -0.440, -7.10),
    (8694.626, "S I", 7.870, 0.050, -7.10),
]

PSEUDO_SPECIES = {
    "Fe I": 0.42, "Fe II": 0.03, "Si I": 0.07, "Ti I": 0.06, "Cr I": 0.05, "Ni I": 0.06,
    "Ca I": 0.04, "Mg I": 0.02, "Co I": 0.03, "V I": 0.03, "Mn I": 0.02, "Al I": 0.01,
    "S I": 0.02, "C I": 0.02, "N I": 0.01, "O I": 0.01, "Na I": 0.01, "Ti II": 0.01,
    "Cr II": 0.01,
}


def _chi_model(rng, name, n):
    """Lower excitation potentials [eV] typical of each species' lines in the far red."""
    if name in ("C I",):
        return rng.uniform(7.5, 9.5, n)
    if name in ("N I",):
        return rng.uniform(10.3, 11.8, n)
    if name in ("O I",):
        return rng.uniform(9.1, 11.0, n)
    if name in ("S I",):
        return rng.uniform(6.5, 8.5, n)
    if name.endswith(" II"):
        return 3.0 + 5.0 * rng.beta(2.0, 2.0, n)
    if name in ("Ti I", "V I", "Cr I"):
        return 0.5 + 3.0 * rng.beta(1.5, 2.0, n)
    if name in ("Si I", "Mg I", "Al I"):
        return 4.0 + 2.8 * rng.beta(2.0, 1.5, n)
    return 0.9 + 4.8 * rng.beta(2.5, 1.5, n)


def _loggf_model(rng, name, chi):
    """log gf: a steep distribution dominated by weak lines, with a tail of moderate ones; the
    lowest-excitation (chi < 2.5 eV) transitions are mostly weak."""
    n = chi.size
    if name in ("C I", "N I", "O I", "S I"):
        return rng.uniform(-2.4, -0.3, n)
    return np.clip(-2.1 - rng.exponential(1.2, n) - 0.5 * np.clip(2.5 - chi, 0.0, None), -8.0, 0.5)


def _tio_lines() -> LineList:
    """TiO: a red-degraded triplet system whose three (0,0) sub-band heads sit at 8432.3, 8442.3 and
    8452.2 A (air), with its Delta v = 0 sequence (1,1)-(3,3) about 100 A further red each and
    Lambda-doubled lines; plus the tails of the 8194/8206 A bands. Rotational and vibrational
    structure from B'' = 0.535, B' = 0.490, omega'' = 1009, omega' = 875 cm^-1."""
    lower = dict(we=1009.2, wexe=4.5, Be=0.5354, ae=0.0030, De=6.0e-7)
    upper = dict(we=875.0, wexe=4.0, Be=0.4900, ae=0.0030, De=6.0e-7)
    branches = {"P": (-1, lambda J: J / 2.0), "Q": (0, lambda J: (2 * J + 1) / 2.0),
                "R": (1, lambda J: (J + 1) / 2.0)}
    lists = []
    # (air wavelength of the (0,0) head, band oscillator strength of each vibrational band)
    systems = [(8432.3, 0.008), (8442.3, 0.008), (8452.2, 0.008), (8194.5, 0.004), (8205.8, 0.004)]
    for head_air, f_band in systems:
        probe = diatomic_band_lines("TiO", 0.0, upper, lower, [(0, 0, 1.0)], {"R": branches["R"]},
                                    160, [(0.0, 0.0, 1.0)], "vacuum", (-np.inf, np.inf))
        nu00 = 1e8 / air_to_vacuum(head_air) - np.max(1e8 / probe.wavelength)
        bands = [(v, v, f_band * (1.0 - 0.1 * v)) for v in range(4)]
        lists.append(diatomic_band_lines("TiO", nu00, upper, lower, bands, branches, 160,
                                         [(0.0, 0.0, 1.0)], "air", LINE_RANGE,
                                         lambda_doubling=0.04))
    return LineList.concatenate(lists)


def _cn_lines() -> LineList:
    """CN red system (A2Pi - X2Sigma+), Delta v = +2 sequence: tails of (2,0)-(4,2) and the
    (5,3), (6,4) bands, from spectroscopic constants; two spin-orbit sub-bands (A' = -52.6 cm^-1)."""
    lower = dict(we=2068.6, wexe=13.09, Be=1.8997, ae=0.0174, De=6.4e-6)
    upper = dict(we=1812.6, wexe=12.61, Be=1.7151, ae=0.0171, De=5.9e-6)
    branches = {"P": (-1, lambda J: (J - 1.0) / 2.0), "Q": (0, lambda J: (2 * J + 1) / 2.0),
                "R": (1, lambda J: (J + 2.0) / 2.0)}
    bands = [(2, 0, 1.0e-3), (3, 1, 1.2e-3), (4, 2, 1.3e-3), (5, 3, 1.3e-3), (6, 4, 1.2e-3)]
    lists = [diatomic_band_lines("CN", 9117.0 + offset, upper, lower, bands, branches, 110,
                                 [(0.0, 0.0, 0.5)], "air", LINE_RANGE) for offset in (26.3, -26.3)]
    return LineList.concatenate(lists)


@lru_cache(maxsize=1)
def rvs_line_list() -> LineList:
    """The full RVS line list (air wavelengths), identical for every call."""
    wl, sp, chi, loggf, g6 = zip(*NAMED_LINES)
    named = LineList.make(wl, np.array(sp), chi, loggf, g6, -5.5,
                          label=[f"{s} {w:.1f}" for s, w in zip(sp, wl)])
    pseudo = pseudo_atomic_lines(LINE_RANGE[0], LINE_RANGE[1], 800, LINELIST_SEED, PSEUDO_SPECIES,
                                 _chi_model, _loggf_model)
    paschen = hydrogen_lines(3, np.arange(12, 31), medium="air")
    return LineList.concatenate([named, pseudo, paschen, _tio_lines(), _cn_lines()])


@lru_cache(maxsize=1)
def rvs_synthesizer() -> Synthesizer:
    """The RVS synthesizer (line list + spectrograph + profile lattice), built once per process."""
    spectrograph = Spectrograph(lambda x: 8460.0 + 0.1 * x, [(0, 2400)], RVS_RESOLVING_POWER,
                                oversample=4)
    return Synthesizer(rvs_line_list(), spectrograph, RVS_BAND, RVS_LATTICE, window_cap=25.0,
                       hydrogen_window_cap=80.0)


# ----------------------------------------------------------------------------- API
def render_rvs(labels) -> np.ndarray:
    """Noiseless RVS spectra (n, 2400) float32 for labels with teff [K], logg, feh, afe (dex).

    ``labels`` is a dict of arrays (or scalars) or an astropy Table. Any Teff/logg is allowed
    (also outside the grid ranges; the physics is only sensible for about 2500-9000 K).
    """
    teff, logg, feh, afe = label_arrays(labels, ("teff", "logg", "feh", "afe"))
    if np.any(teff < 1500) or np.any(teff > 20000):
        raise DataError("teff must be in Kelvin, between 1500 and 20000 K; got "
                        f"{teff.min():.0f}-{teff.max():.0f}.")
    xh = scaled_abundances(feh, afe)
    return rvs_synthesizer().render(teff, logg, feh, afe, xh)


def _draw_feh(rng, n):
    """[Fe/H]: 70 % from a realistic disc/halo-like N(-0.3, 0.5), 30 % uniform over -5..+1."""
    lo, hi = RVS_LABEL_RANGES["feh"]
    realistic = rng.normal(-0.3, 0.5, n)
    uniform = rng.uniform(lo, hi, n)
    feh = np.where(rng.uniform(size=n) < 0.7, realistic, uniform)
    return np.clip(feh, lo, hi)


def sample_rvs_labels(n_stars, sampling, rng) -> dict:
    """Labels of an RVS set: 'random' (uniform Teff, logg, [a/Fe]; [Fe/H] see _draw_feh) or
    'grid' (a regular grid of about n_stars points, more steps in Teff than in the others)."""
    r = RVS_LABEL_RANGES
    if sampling == "random":
        return {
            "teff": rng.uniform(*r["teff"], n_stars),
            "logg": rng.uniform(*r["logg"], n_stars),
            "feh": _draw_feh(rng, n_stars),
            "afe": rng.uniform(*r["afe"], n_stars),
        }
    if sampling == "grid":
        shares = np.array([2.0, 1.5, 1.0, 0.75])
        base = (n_stars / np.prod(shares)) ** 0.25
        counts = np.maximum(np.round(shares * base).astype(int), 1)
        axes = [np.linspace(*r[name], c) for name, c in zip(("teff", "logg", "feh", "afe"), counts)]
        mesh = np.meshgrid(*axes, indexing="ij")
        return {name: np.round(m.ravel(), 6) for name, m in zip(("teff", "logg", "feh", "afe"), mesh)}
    raise DataError(f"sampling must be 'random' or 'grid'; got {sampling!r}.")


def simulate_rvs(n_stars: int = 2000, sampling: str = "random", seed: int = 0, snr=None,
                 use_cache: bool = True) -> Dataset:
    """A Gaia RVS-like Dataset: (n, 2400) continuum-normalised float32 spectra, 8460-8700 A.

    labels: id, teff [K], logg [dex], feh [dex], afe [dex]. ``snr``: if given, Gaussian noise of
    sigma = 1/snr (continuum units) is added and ``errors`` is set. The same call returns the same
    bytes (and is read from the on-disk cache when ``use_cache``).
    """
    n_stars = int(n_stars)
    if n_stars < 1:
        raise DataError(f"n_stars must be a positive integer; got {n_stars}.")
    if sampling not in ("random", "grid"):
        raise DataError(f"sampling must be 'random' or 'grid'; got {sampling!r}.")
    snr = check_snr(snr)
    params = {"n_stars": n_stars, "sampling": sampling, "seed": int(seed), "snr": snr}

    def build() -> Dataset:
        label_seq, noise_seq = np.random.SeedSequence(int(seed)).spawn(2)
        labels = sample_rvs_labels(n_stars, sampling, np.random.default_rng(label_seq))
        n = labels["teff"].size
        table = Table({"id": np.arange(n), **labels})
        return simulated_dataset(render_rvs(labels), RVS_WAVELENGTH.copy(), table, "rvs", VERSION, seed,
                                 params, snr, np.random.default_rng(noise_seq))

    return cached_dataset("rvs", VERSION, params, build, use_cache)
