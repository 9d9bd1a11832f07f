"""The spectral energy distribution of an A-type star, from ~2900 to ~11200 Angstrom, for the BHB
simulator (:mod:`astrocore.data.simulators.bhb`).

One SED per star carries the physics that separates blue horizontal branch (BHB) stars from blue
stragglers and A-type main-sequence stars (Xue et al. 2008, 2011; Wei et al. 2023):

* the temperature continuum: a Planck curve at Teff, with metal-line blanketing below ~4500 A that
  grows with [Fe/H];
* the Balmer jump at 3646 A, a drop of ``balmer_jump_mag`` magnitudes that grows as gravity falls
  (less H- opacity at low electron pressure), softened redwards by the merging high-order Balmer
  lines over a width that grows with gravity (Inglis-Teller: fewer resolved lines at high density);
* Balmer (and Paschen) lines with the Sersic-like profile of Xue et al. (2008),
  ``1 - a exp(-(|dl| / b)^c)``: Stark wings broaden with gravity (b grows, the shape c falls
  towards Lorentzian wings); depths peak near 9500 K; high-order lines dissolve earlier at high gravity;
* metal lines (Ca II K and H, Ca I 4227, Fe I, Mg II 4481, Mg b, Na D, the Ca II triplet) whose
  depths scale with [Fe/H] and grow in cooler stars.

Everything is evaluated on one log-linear grid of 1e-4 dex pixels (the SDSS spectrograph's), so the
SDSS spectrum is a slice of it and the ugriz magnitudes come from the same flux.
All functions take numpy arrays of per-star parameters and return (n_stars, n_pixels) arrays.
"""
from __future__ import annotations

import numpy as np

LOG_STEP = 1e-4  # dex per pixel, as SDSS
SPECTRUM_LOG_START = np.log10(4000.0)
# The SED grid shares the spectrum's pixels and extends them to 2900 A (the sdss2010 u filter
# starts at 2939 A) and 11200 A (z ends at 11141 A).
SED_LOG_START = SPECTRUM_LOG_START - LOG_STEP * int(np.ceil((SPECTRUM_LOG_START - np.log10(2900.0)) / LOG_STEP))
SED_N_PIXELS = int(np.ceil((np.log10(11200.0) - SED_LOG_START) / LOG_STEP))
SPECTRUM_N_PIXELS = 3522  # 4000-9000 A at 1e-4 dex
BALMER_EDGE_AA = 3646.0
RESOLVING_POWER = 2000.0
COLOUR_TEMPERATURE_FACTOR = 1.4

H_PLANCK, C_LIGHT, K_BOLTZMANN = 6.62607015e-27, 2.99792458e10, 1.380649e-16  # cgs


def sed_wavelength() -> np.ndarray:
    """The SED's wavelength grid [Angstrom], log-linear with 1e-4 dex pixels, 2900-11200 A."""
    return 10 ** (SED_LOG_START + LOG_STEP * np.arange(SED_N_PIXELS))


def spectrum_slice() -> slice:
    """The pixels of the SED grid that form the 4000-9000 A SDSS-like spectrum (3522 pixels)."""
    first = int(round((SPECTRUM_LOG_START - SED_LOG_START) / LOG_STEP))
    return slice(first, first + SPECTRUM_N_PIXELS)


def _air_balmer(n_upper: np.ndarray, n_lower: int = 2) -> np.ndarray:
    """Air wavelengths [A] of hydrogen lines n_upper -> n_lower (Rydberg formula, air index 1.00028)."""
    rydberg_h = 1.096775834e-3  # 1/Angstrom
    vacuum = 1.0 / (rydberg_h * (1.0 / n_lower**2 - 1.0 / np.asarray(n_upper, float) ** 2))
    return vacuum / 1.00028


BALMER_N = np.arange(3, 23)  # H-alpha (n=3) to H22
BALMER_AA = _air_balmer(BALMER_N)
PASCHEN_N = np.arange(9, 19)  # P9 (9229 A) to P18 (8438 A): visible in A stars around the Ca II triplet
PASCHEN_AA = _air_balmer(PASCHEN_N, n_lower=3)

# Width of each Balmer line relative to H-gamma's scale width b (Xue et al. 2008 fit H-gamma with
# b = 7.5-10.5 A for BHB stars), and its depth a at the reference temperature.
_BALMER_WIDTH_SCALE = np.array([1.15, 1.1, 1.0, 0.95, 0.85, 0.72, 0.62, 0.55, 0.5, 0.46, 0.42, 0.4, 0.38,
                                0.36, 0.34, 0.33, 0.32, 0.31, 0.3, 0.3])
_BALMER_DEPTH = np.array([0.58, 0.66, 0.70, 0.72, 0.70, 0.66, 0.62, 0.58, 0.54, 0.5, 0.46, 0.42, 0.38, 0.35,
                          0.32, 0.3, 0.28, 0.26, 0.24, 0.22])

# Metal lines: (air wavelength [A], depth at [Fe/H] = 0 and 7500 K, Gaussian sigma [A]).
METAL_LINES = np.array([
    (3933.66, 0.80, 1.6),  # Ca II K
    (3968.47, 0.55, 1.6),  # Ca II H (blends with H-epsilon)
    (4045.81, 0.30, 0.9),  # Fe I
    (4226.73, 0.30, 0.9),  # Ca I
    (4383.55, 0.28, 0.9),  # Fe I
    (4481.2, 0.35, 1.0),  # Mg II (strong in A stars)
    (4923.92, 0.22, 0.9),  # Fe II
    (5018.44, 0.22, 0.9),  # Fe II
    (5167.32, 0.25, 0.9), (5172.68, 0.3, 0.9), (5183.6, 0.33, 0.9),  # Mg b
    (5269.54, 0.2, 0.9),  # Fe I
    (5889.95, 0.3, 0.9), (5895.92, 0.25, 0.9),  # Na D (partly interstellar)
    (8498.02, 0.25, 1.2), (8542.09, 0.4, 1.3), (8662.14, 0.35, 1.3),  # Ca II triplet
])


def planck_lambda(wavelength_aa: np.ndarray, teff: np.ndarray) -> np.ndarray:
    """B_lambda(T) [erg s^-1 cm^-2 A^-1 sr^-1] at ``wavelength_aa`` for each temperature (n, n_pixels)."""
    lam_cm = wavelength_aa[None, :] * 1e-8
    x = H_PLANCK * C_LIGHT / (lam_cm * K_BOLTZMANN * np.asarray(teff, float)[:, None])
    return 2 * H_PLANCK * C_LIGHT**2 / lam_cm**5 / np.expm1(x) * 1e-8


def balmer_jump_mag(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """Depth of the Balmer discontinuity [mag]: largest near 8500-9000 K, larger at lower gravity
    (0.8 mag more per dex of log g lower), so BHB stars have redder u-g at fixed g-r."""
    teff, logg = np.asarray(teff, float), np.asarray(logg, float)
    return 0.8 * np.exp(-(((teff - 8800.0) / 2600.0) ** 2)) + 0.8 * (4.3 - logg)


def balmer_line_parameters(teff: np.ndarray, logg: np.ndarray) -> dict[str, np.ndarray]:
    """H-gamma profile parameters per star: depth a, scale width b [A], shape c, and the highest
    resolved upper level n_max (Inglis-Teller)."""
    teff, logg = np.asarray(teff, float), np.asarray(logg, float)
    hot = np.exp(-(((teff - 9500.0) / 3200.0) ** 2))  # line strength peaks near A0
    depth = 0.25 + 0.75 * hot
    width = 8.6 * np.exp(0.50 * (logg - 3.3)) * (0.75 + 0.25 * hot)
    shape = np.clip(1.0 - 0.36 * (logg - 3.3), 0.45, 1.4)
    n_max = 23.0 - 3.5 * (logg - 2.8)
    return {"depth": depth, "width": width, "shape": shape, "n_max": n_max}


def _profile(wavelength_aa, centre, depth, width, shape):
    """Absorption profile 1 - a exp(-(|dl| / b)^c) (n, n_pixels); per-star depth/width/shape (n,)."""
    distance = np.abs(wavelength_aa[None, :] - centre) / width[:, None]
    return 1.0 - depth[:, None] * np.exp(-(distance ** shape[:, None]))


def hydrogen_lines(wavelength_aa: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """Product of all Balmer and Paschen line profiles (n, n_pixels), dimensionless."""
    n = len(params["depth"])
    transmission = np.ones((n, wavelength_aa.size))
    for index, (level, centre) in enumerate(zip(BALMER_N, BALMER_AA)):
        dissolve = np.exp(-((level / params["n_max"]) ** 6))  # level dissolution at high density
        depth = params["depth"] * _BALMER_DEPTH[index] / 0.70 * dissolve
        width = params["width"] * _BALMER_WIDTH_SCALE[index]
        window = np.abs(wavelength_aa - centre) < 40 * width.max()
        transmission[:, window] *= _profile(wavelength_aa[window], centre, depth, width, params["shape"])
    for level, centre in zip(PASCHEN_N, PASCHEN_AA):
        dissolve = np.exp(-((level / params["n_max"]) ** 6))
        depth = params["depth"] * 0.35 * dissolve
        width = params["width"] * 0.9
        window = np.abs(wavelength_aa - centre) < 40 * width.max()
        transmission[:, window] *= _profile(wavelength_aa[window], centre, depth, width, params["shape"])
    return transmission


def metal_lines(wavelength_aa: np.ndarray, teff: np.ndarray, feh: np.ndarray, vsini: np.ndarray) -> np.ndarray:
    """Metal-line transmission (n, n_pixels): depth ~ (10^[Fe/H])^0.6, deeper in cooler stars;
    widened by rotation ``vsini`` [km/s]."""
    teff, feh, vsini = (np.asarray(v, float) for v in (teff, feh, vsini))
    strength = (10.0 ** feh) ** 0.6 * np.exp(-(teff - 7500.0) / 1800.0)
    transmission = np.ones((len(teff), wavelength_aa.size))
    for centre, depth0, sigma0 in METAL_LINES:
        sigma = np.sqrt(sigma0**2 + (centre * vsini / 2.998e5 / 1.5) ** 2)
        depth = np.clip(depth0 * strength, 0.0, 0.92)
        window = np.abs(wavelength_aa - centre) < 12
        x = (wavelength_aa[window][None, :] - centre) / sigma[:, None]
        transmission[:, window] *= 1.0 - depth[:, None] * np.exp(-0.5 * x**2)
    return transmission


def continuum(wavelength_aa: np.ndarray, teff: np.ndarray, logg: np.ndarray, feh: np.ndarray) -> np.ndarray:
    """Planck continuum with the Balmer jump and UV metal blanketing (n, n_pixels), arbitrary units."""
    teff, logg, feh = (np.asarray(v, float) for v in (teff, logg, feh))
    # The Paschen continuum of A stars is steeper than a Planck curve at Teff (Vega, 9600 K, has
    # AB g-r = -0.25): a colour temperature of 1.4 Teff reproduces their optical colours.
    flux = planck_lambda(wavelength_aa, COLOUR_TEMPERATURE_FACTOR * teff)
    jump = balmer_jump_mag(teff, logg)
    # The jump is sharp at low gravity; at high gravity the merging lines spread it redwards.
    spread = 20.0 + 15.0 * np.clip(logg - 2.8, 0, None)
    argument = (wavelength_aa[None, :] - BALMER_EDGE_AA - spread[:, None] / 2) / (spread[:, None] / 6)
    ramp = 0.5 * (1.0 - np.tanh(0.5 * argument))  # the logistic 1 / (1 + e^x), without overflow
    flux *= 10 ** (-0.4 * jump[:, None] * ramp)
    # The pseudo-continuum between the jump and ~4000 A, lowered by the wings of the crowded
    # high-order Balmer lines and by metal lines (Ca II H and K, Fe I).
    crowded = 0.38 + 0.12 * (10.0 ** feh) ** 0.5
    above_jump = (0.5 * (1.0 + np.tanh((wavelength_aa - 3655.0) / 8.0))) * (0.5 * (1.0 - np.tanh((wavelength_aa - 3990.0) / 15.0)))
    flux *= 10 ** (-0.4 * crowded[:, None] * above_jump[None, :])
    # Metal-line blanketing in the near UV and blue, growing with [Fe/H] and in cooler stars.
    blanket = 0.22 * (10.0 ** feh) ** 0.5 * np.exp(-(teff - 7500.0) / 2500.0)
    blue = 1.0 / (1.0 + np.exp((wavelength_aa - 4300.0) / 150.0))
    flux *= 10 ** (-0.4 * blanket[:, None] * blue[None, :])
    return flux


def smooth_to_resolution(flux: np.ndarray, resolving_power: float = RESOLVING_POWER) -> np.ndarray:
    """Convolve spectra on the 1e-4 dex grid with a Gaussian line-spread function of resolving power R."""
    sigma_pixels = 1.0 / (resolving_power * np.log(10) * LOG_STEP) / 2.3548
    half = int(np.ceil(4 * sigma_pixels))
    offsets = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (offsets / sigma_pixels) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(flux, ((0, 0), (half, half)), mode="edge")
    out = np.zeros_like(flux)
    for k, weight in enumerate(kernel):
        out += weight * padded[:, k:k + flux.shape[1]]
    return out


def stellar_sed(teff, logg, feh, vsini, logg_lines_offset=None, logg_jump_offset=None) -> np.ndarray:
    """The SED (n, SED_N_PIXELS) on :func:`sed_wavelength`, arbitrary flux units, at R ~ 2000.

    Line formation and the Balmer continuum respond to gravity through different, imperfectly
    known physics (Stark-broadening theory, helium abundance, level dissolution): each star's
    lines see ``logg + logg_lines_offset`` and its Balmer jump ``logg + logg_jump_offset`` [dex].
    These independent offsets make the line profiles (spectrum) and the jump (u band) two noisy
    views of the same gravity, which is why combining them classifies better than either alone.
    """
    wavelength = sed_wavelength()
    logg = np.asarray(logg, float)
    lines_logg = logg + (0.0 if logg_lines_offset is None else np.asarray(logg_lines_offset, float))
    jump_logg = logg + (0.0 if logg_jump_offset is None else np.asarray(logg_jump_offset, float))
    flux = continuum(wavelength, teff, jump_logg, feh)
    flux *= hydrogen_lines(wavelength, balmer_line_parameters(teff, lines_logg))
    flux *= metal_lines(wavelength, teff, feh, vsini)
    return smooth_to_resolution(flux)
