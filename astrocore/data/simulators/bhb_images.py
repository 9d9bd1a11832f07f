"""ugriz cutouts of the BHB simulator drawn with GalSim (see :mod:`astrocore.data.simulators.bhb`).

Image unit: nanomaggies per pixel (an object of AB magnitude m has 10^(-0.4 (m - 22.5)) in total).
The star is a Moffat PSF (beta 3.5) per band; neighbours (stars and exponential-disc galaxies
convolved with the r-band PSF) are drawn once and scaled per band by their colours.
"""
from __future__ import annotations

import galsim
import numpy as np

BANDS = ("u", "g", "r", "i", "z")
EFFECTIVE_WAVELENGTH_AA = np.array([3551.0, 4686.0, 6166.0, 7480.0, 8932.0])
PIXEL_SCALE_ARCSEC = 0.396
MOFFAT_BETA = 3.5
# Sky noise per pixel [nanomaggies]: u the noisiest (SDSS u has the lowest throughput and these
# stars are faintest there), z next.
SKY_SIGMA_NMGY = np.array([0.25, 0.05, 0.07, 0.11, 0.22])
_GSPARAMS = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=5e-3)


def band_seeing(r_seeing_arcsec: np.ndarray) -> np.ndarray:
    """FWHM per band [arcsec] (n, 5): the r-band seeing scaled as lambda^-0.2 (Kolmogorov)."""
    factor = (EFFECTIVE_WAVELENGTH_AA / EFFECTIVE_WAVELENGTH_AA[2]) ** -0.2
    return np.asarray(r_seeing_arcsec, float)[:, None] * factor[None, :]


def nanomaggies(mag: np.ndarray) -> np.ndarray:
    """Total flux [nanomaggies] of AB magnitude ``mag``."""
    return 10 ** (-0.4 * (np.asarray(mag, float) - 22.5))


def psf_magnitude_error(mags: np.ndarray, fwhm_arcsec: np.ndarray) -> np.ndarray:
    """1-sigma PSF-photometry error [mag] (n, 5) for the sky noise of each band: the noise in an
    effective area of 4 pi sigma_psf^2 pixels, plus a 0.01 mag calibration floor."""
    sigma_pixels = fwhm_arcsec / 2.3548 / PIXEL_SCALE_ARCSEC
    area = 4 * np.pi * sigma_pixels**2
    flux = nanomaggies(mags)
    noise = SKY_SIGMA_NMGY[None, :] * np.sqrt(area)
    return np.sqrt((1.0857 * noise / flux) ** 2 + 0.01**2)


def _neighbour_colours(rng, is_galaxy: bool) -> np.ndarray:
    """u-r, g-r, 0, r-i, r-z offsets [mag] of a random neighbour (galaxies redder)."""
    g_r = rng.uniform(0.4, 1.3) if is_galaxy else rng.uniform(0.2, 1.4)
    u_g = rng.uniform(1.0, 2.0) if is_galaxy else 0.9 + 0.9 * g_r + rng.normal(0, 0.1)
    r_i = rng.uniform(0.2, 0.6) if is_galaxy else 0.45 * g_r + rng.normal(0, 0.05)
    i_z = rng.uniform(0.1, 0.4) if is_galaxy else 0.3 * g_r + rng.normal(0, 0.05)
    return np.array([u_g + g_r, g_r, 0.0, -r_i, -r_i - i_z])


def render_cutouts(mags: np.ndarray, r_seeing_arcsec: np.ndarray, size: int, rng: np.random.Generator,
                   neighbours_per_cutout: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Cutouts (n, 5, size, size) float32 [nanomaggies] of stars of AB magnitudes ``mags`` (n, 5)
    at the centre (sub-pixel offset), with neighbours and sky noise; also the FWHM per band (n, 5)."""
    n = len(mags)
    fwhm = band_seeing(r_seeing_arcsec)
    images = np.zeros((n, len(BANDS), size, size), np.float32)
    flux = nanomaggies(mags)
    half = size * PIXEL_SCALE_ARCSEC / 2
    for index in range(n):
        dx, dy = rng.uniform(-0.5, 0.5, 2) * PIXEL_SCALE_ARCSEC
        for b in range(len(BANDS)):
            psf = galsim.Moffat(beta=MOFFAT_BETA, fwhm=float(fwhm[index, b]), gsparams=_GSPARAMS)
            stamp = psf.shift(dx, dy).drawImage(nx=size, ny=size, scale=PIXEL_SCALE_ARCSEC)
            images[index, b] = stamp.array * flux[index, b]
        r_psf = galsim.Moffat(beta=MOFFAT_BETA, fwhm=float(fwhm[index, 2]), gsparams=_GSPARAMS)
        for _ in range(rng.poisson(neighbours_per_cutout)):
            is_galaxy = rng.random() < 0.6
            r_mag = rng.uniform(18.0, 23.0)
            position = rng.uniform(-half, half, 2)
            if np.hypot(*position) < 1.2:  # a blend this close would be deblended or rejected
                position *= 1.2 / max(np.hypot(*position), 1e-3)
            if is_galaxy:
                profile = galsim.Exponential(half_light_radius=rng.uniform(0.3, 1.5), gsparams=_GSPARAMS)
                profile = galsim.Convolve(profile.shear(e=rng.uniform(0, 0.6), beta=rng.uniform(0, np.pi) * galsim.radians),
                                          r_psf)
            else:
                profile = r_psf
            stamp = profile.shift(*position).drawImage(nx=size, ny=size, scale=PIXEL_SCALE_ARCSEC).array
            band_flux = nanomaggies(r_mag + _neighbour_colours(rng, is_galaxy))
            images[index] += (band_flux[:, None, None] * stamp[None]).astype(np.float32)
    images += (SKY_SIGMA_NMGY[None, :, None, None] * rng.standard_normal(images.shape)).astype(np.float32)
    return images, fwhm
