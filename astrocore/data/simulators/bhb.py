"""Blue horizontal branch (BHB) stars and their contaminants: SDSS-like spectra and ugriz cutouts
from one SED per star (the data of Wei, Jiang & Zhang 2023, PASP 135, 084501; BATMM).

Per star (see :mod:`astrocore.data.simulators.bhb_sed` for the SED physics):

* class: BHB (label 1, ~40 %) or non-BHB (0: blue stragglers of the halo and A-type main-sequence
  stars of the thick disc, half each). BHB: Teff 7500-9250 K, log g 2.8-3.8 rising with Teff along
  the horizontal branch, [Fe/H] ~ -1.7 +- 0.4, slow rotation. Non-BHB: Teff 7000-10000 K,
  log g 3.8-4.5, more metal-rich, faster rotation.
* apparent g magnitude 15.5-19.5, reddening E(B-V) 0-0.08 (Fitzpatrick 1999, R_V = 3.1 from
  ``dust_extinction``), applied to the SED.
* the spectrum: the SED's 4000-9000 A slice (3522 log-linear pixels of 1e-4 dex, R ~ 2000) in
  1e-17 erg s^-1 cm^-2 A^-1, with noise from the star's photons and the sky (rising to the red,
  with night-sky lines); ``snr`` is the median S/N per pixel at 4000-5500 A of a g = 18 star,
  fainter stars get less (contamination rises for faint stars).
* ugriz AB magnitudes of the same SED through speclite's ``sdss2010`` filters (true, and
  "observed" with the PSF-photometry error of the cutout's noise).
* 5-band cutouts (default 32 x 32, 0.396 arcsec pixels) in nanomaggies, drawn with GalSim: a
  Moffat PSF (beta 3.5) whose FWHM is the r-band seeing (1.0-1.8 arcsec) scaled as
  lambda^-0.2 (u worst), random neighbouring stars and background galaxies (drawn once, scaled
  per band by their colours), and Gaussian sky noise per band, u the noisiest.

The u band holds the Balmer jump (3646 A) and the merging high-order lines, which lie outside the
4000-9000 A spectrum: the images add information the spectrum lacks. Pure function of
(parameters, seed); cached on disk by the hash of the call.
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table

from ..cache import cached_dataset
from ..dataset import DataError, Dataset
from .bhb_images import BANDS, PIXEL_SCALE_ARCSEC, SKY_SIGMA_NMGY, psf_magnitude_error, render_cutouts
from .bhb_sed import SPECTRUM_N_PIXELS, sed_wavelength, spectrum_slice, stellar_sed

GENERATOR = "bhb"
VERSION = "2"
BHB_FRACTION = 0.40  # 4985 BHB / 12363 stars in Wei et al. (2023)
REFERENCE_G_MAG = 18.0  # ``snr`` is the S/N per pixel of a star this bright
SKY_G_MAG = 18.7  # brightness at which the sky adds as much variance as the star, per pixel
FLUX_UNIT = 1e-17  # erg s^-1 cm^-2 A^-1
CHUNK = 400
LINES_LOGG_SCATTER = 0.25  # dex
JUMP_LOGG_SCATTER = 0.12  # dex


def spectrum_wavelength() -> np.ndarray:
    """The 3522-pixel SDSS-like wavelength grid [Angstrom], 4000-9000 A, 1e-4 dex per pixel."""
    return sed_wavelength()[spectrum_slice()]


def draw_parameters(n_stars: int, rng: np.random.Generator, bhb_fraction: float = BHB_FRACTION) -> Table:
    """Physical parameters of ``n_stars`` stars (class, Teff, log g, [Fe/H], rotation, nuisance
    scatter, magnitude, reddening, seeing), drawn with ``rng``."""
    is_bhb = rng.random(n_stars) < bhb_fraction
    n = n_stars
    teff = np.where(is_bhb, rng.uniform(7500, 9250, n), rng.uniform(7000, 10000, n))
    # Along the horizontal branch log g rises with Teff (Xue et al. 2011, Fig. 2).
    logg_bhb = np.clip(2.95 + 0.55 * (teff - 7500) / 1750 + rng.normal(0, 0.18, n), 2.8, 3.8)
    logg_other = rng.uniform(3.8, 4.5, n)
    logg = np.where(is_bhb, logg_bhb, logg_other)
    halo_straggler = rng.random(n) < 0.5
    feh = np.where(is_bhb, rng.normal(-1.7, 0.4, n),
                   np.where(halo_straggler, rng.normal(-1.2, 0.45, n), rng.normal(-0.5, 0.3, n)))
    feh = np.clip(feh, -3.0, 0.3)
    vsini = np.where(is_bhb, rng.uniform(5, 40, n), rng.uniform(15, 200, n))
    kind = np.where(is_bhb, "BHB", np.where(halo_straggler, "BS", "MS-A"))
    return Table({
        "label": is_bhb.astype(np.int64),
        "kind": kind,
        "teff": teff, "logg": logg, "feh": feh,
        "vsini": vsini,
        # Unmodelled physics: the gravity the line profiles and the Balmer jump respond to
        # scatters independently around log g (see bhb_sed.stellar_sed).
        "logg_lines_offset": rng.normal(0, LINES_LOGG_SCATTER, n),
        "logg_jump_offset": rng.normal(0, JUMP_LOGG_SCATTER, n),
        "g_true": rng.uniform(15.5, 19.5, n),
        "ebv": rng.uniform(0.0, 0.08, n),
        "seeing": np.clip(rng.lognormal(np.log(1.35), 0.18, n), 1.0, 1.8),
    })


def _extinction_curve(wavelength_aa: np.ndarray) -> np.ndarray:
    """A(lambda) / E(B-V) of Fitzpatrick (1999), R_V = 3.1."""
    import astropy.units as u  # lazy with dust_extinction: only simulation needs them
    from dust_extinction.parameter_averages import F99

    model = F99(Rv=3.1)
    return 3.1 * model(wavelength_aa * u.AA)


def sky_shape(wavelength_aa: np.ndarray) -> np.ndarray:
    """Relative sky variance per pixel (1 at 4500 A): a continuum rising to the red plus the
    [O I] 5577, 6300 A lines and the OH forest above 6800 A."""
    shape = (wavelength_aa / 4500.0) ** 2
    for centre, height, width in ((5577.3, 12.0, 1.5), (6300.3, 5.0, 1.5), (5893.0, 3.0, 2.0)):
        shape = shape + height * np.exp(-0.5 * ((wavelength_aa - centre) / width) ** 2)
    oh = (wavelength_aa > 6800) * (1.0 + 1.5 * (0.5 + 0.5 * np.sin(wavelength_aa / 7.0) ** 8))
    return shape + oh


def throughput(wavelength_aa: np.ndarray) -> np.ndarray:
    """Relative spectrograph throughput (falls below 4300 A and above 8500 A)."""
    blue = 1.0 / (1.0 + np.exp(-(wavelength_aa - 4150.0) / 120.0))
    red = 1.0 / (1.0 + np.exp((wavelength_aa - 8700.0) / 250.0))
    return 0.25 + 0.75 * blue * red


def _magnitudes(sed: np.ndarray, wavelength: np.ndarray) -> np.ndarray:
    """AB magnitudes (n, 5) of SEDs [erg s^-1 cm^-2 A^-1] through speclite's sdss2010 ugriz."""
    import astropy.units as u  # lazy: speclite and units only when simulating
    import speclite.filters

    filters = speclite.filters.load_filters(*[f"sdss2010-{band}" for band in BANDS])
    table = filters.get_ab_magnitudes(sed * (u.erg / u.s / u.cm**2 / u.AA), wavelength * u.AA)
    return np.stack([np.asarray(table[name], float) for name in table.colnames], axis=1)


def _spectra_chunk(params: Table, snr: float, rng: np.random.Generator):
    """SEDs -> (flux, sigma [1e-17 cgs], true mags (n, 5), per-star S/N) for one chunk of stars."""
    wavelength = sed_wavelength()
    sed = stellar_sed(params["teff"], params["logg"], params["feh"], params["vsini"],
                      params["logg_lines_offset"], params["logg_jump_offset"])
    sed *= 10 ** (-0.4 * np.asarray(params["ebv"])[:, None] * _extinction_curve(wavelength)[None, :])
    mags = _magnitudes(sed, wavelength)
    scale = 10 ** (-0.4 * (np.asarray(params["g_true"]) - mags[:, 1]))
    sed *= scale[:, None]
    mags += -2.5 * np.log10(scale)[:, None]
    flux = sed[:, spectrum_slice()] / FLUX_UNIT
    wave = wavelength[spectrum_slice()]
    # S/N per pixel: star photons and sky; a star at REFERENCE_G_MAG gets ``snr``.
    star = 10 ** (-0.4 * np.asarray(params["g_true"]))
    sky = 10 ** (-0.4 * SKY_G_MAG)
    reference = 10 ** (-0.4 * REFERENCE_G_MAG)
    star_snr = snr * (star / np.sqrt(star + sky)) / (reference / np.sqrt(reference + sky))
    blue = (wave >= 4000) & (wave <= 5500)
    level = np.median(flux[:, blue], axis=1)
    # Variance in units of the blue continuum level: photon term follows flux / throughput, the
    # sky term the sky's shape / throughput; their ratio is the star's flux over the sky's.
    t = throughput(wave)[None, :]
    photon = np.clip(flux / level[:, None], 0.01, None) / t
    sky_term = (sky / star)[:, None] * sky_shape(wave)[None, :] / t
    variance = photon + sky_term
    reference_variance = np.median(variance[:, blue], axis=1)
    sigma = level[:, None] / star_snr[:, None] * np.sqrt(variance / reference_variance[:, None])
    noisy = flux + sigma * rng.standard_normal(flux.shape)
    return noisy.astype(np.float32), sigma.astype(np.float32), mags, star_snr


def simulate_bhb(n_stars: int = 4000, seed: int = 0, snr: float = 15.0, image_size: int = 32,
                 bhb_fraction: float = BHB_FRACTION, neighbours_per_cutout: float = 1.0,
                 use_cache: bool = True) -> Dataset:
    """Simulate BHB stars and contaminants (see the module docstring).

    Parameters
    ----------
    n_stars : number of stars.
    seed : random seed; the same call gives the same bytes.
    snr : median S/N per pixel at 4000-5500 A of a g = 18 mag star.
    image_size : cutout side [pixels] (0.396 arcsec each; the paper used 64).
    bhb_fraction : fraction of BHB stars (label 1).
    neighbours_per_cutout : mean number of neighbouring stars and galaxies per cutout.

    Returns a :class:`Dataset` with spectra (n, 3522) [1e-17 erg s^-1 cm^-2 A^-1], errors, images
    (n, 5, size, size) [nanomaggies] and labels (id, label, kind, teff, logg, feh, mag_<band>,
    mag_err_<band>, mag_true_<band>, snr, ...).
    """
    n_stars, image_size = int(n_stars), int(image_size)
    if n_stars < 1:
        raise DataError(f"n_stars must be at least 1; got {n_stars}.")
    if not 16 <= image_size <= 128:
        raise DataError(f"image_size must be 16-128 pixels; got {image_size}.")
    if not snr > 0:
        raise DataError(f"snr must be positive; got {snr}.")
    if not 0.0 < bhb_fraction < 1.0:
        raise DataError(f"bhb_fraction must be between 0 and 1; got {bhb_fraction}.")
    params = {"n_stars": n_stars, "seed": int(seed), "snr": float(snr), "image_size": image_size,
              "bhb_fraction": float(bhb_fraction), "neighbours_per_cutout": float(neighbours_per_cutout)}
    return cached_dataset(GENERATOR, VERSION, params, lambda: _simulate(**params), use_cache=use_cache)


def _simulate(n_stars, seed, snr, image_size, bhb_fraction, neighbours_per_cutout) -> Dataset:
    root = np.random.SeedSequence(seed)
    parameter_seed, spectrum_seed, image_seed, photometry_seed = root.spawn(4)
    labels = draw_parameters(n_stars, np.random.default_rng(parameter_seed), bhb_fraction)
    spectrum_rng = np.random.default_rng(spectrum_seed)
    spectra = np.empty((n_stars, SPECTRUM_N_PIXELS), np.float32)
    errors = np.empty_like(spectra)
    mags = np.empty((n_stars, len(BANDS)))
    star_snr = np.empty(n_stars)
    for start in range(0, n_stars, CHUNK):
        part = slice(start, min(start + CHUNK, n_stars))
        spectra[part], errors[part], mags[part], star_snr[part] = _spectra_chunk(labels[part], snr, spectrum_rng)
    images, seeing_per_band = render_cutouts(mags, np.asarray(labels["seeing"]), image_size,
                                             np.random.default_rng(image_seed), neighbours_per_cutout)
    magnitude_error = psf_magnitude_error(mags, seeing_per_band)
    observed = mags + magnitude_error * np.random.default_rng(photometry_seed).standard_normal(mags.shape)
    labels["id"] = np.array([f"bhbsim-{seed}-{i:06d}" for i in range(n_stars)])
    labels["snr"] = star_snr
    for b, band in enumerate(BANDS):
        labels[f"mag_{band}"] = observed[:, b]
        labels[f"mag_err_{band}"] = magnitude_error[:, b]
        labels[f"mag_true_{band}"] = mags[:, b]
    labels["u_g"] = observed[:, 0] - observed[:, 1]
    labels["g_r"] = observed[:, 1] - observed[:, 2]
    labels = labels[["id", *[c for c in labels.colnames if c != "id"]]]
    for name, unit in (("teff", "K"), ("logg", "dex"), ("feh", "dex"), ("vsini", "km/s"), ("seeing", "arcsec"),
                       ("logg_lines_offset", "dex"), ("logg_jump_offset", "dex")):
        labels[name].unit = unit
    for column in labels.colnames:
        if column.startswith(("mag_", "g_true", "u_g", "g_r", "ebv")):
            labels[column].unit = "mag"
    provenance = {
        "generator": GENERATOR, "version": VERSION,
        "params": {"n_stars": n_stars, "seed": seed, "snr": snr, "image_size": image_size,
                   "bhb_fraction": bhb_fraction, "neighbours_per_cutout": neighbours_per_cutout},
        "flux_unit": "1e-17 erg s^-1 cm^-2 Angstrom^-1", "image_unit": "nanomaggies",
        "sky_sigma_nmgy": dict(zip(BANDS, map(float, SKY_SIGMA_NMGY))),
        "classes": {"1": "BHB", "0": "blue straggler / A-type main sequence"},
    }
    return Dataset(spectra, spectrum_wavelength(), labels, errors=errors, provenance=provenance,
                   images=images, bands=BANDS, pixel_scale_arcsec=PIXEL_SCALE_ARCSEC)
