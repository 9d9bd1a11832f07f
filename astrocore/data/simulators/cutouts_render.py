"""Drawing cutouts with GalSim: one unit-flux image per component and PSF class, scaled per band.

An object is up to :data:`MAX_COMPONENTS` light components (a point source, a Sersic bulge, an
exponential disc, GalSim's RandomKnots for star-forming clumps, a tidal tail), each with its own
flux in every band (its own colour). The PSF (a Moffat, beta = 3.5) changes slowly with wavelength,
so the bands are grouped into a few PSF classes: each component is drawn once per class and the
band images are sums of component images times their fluxes. Drawing 12 bands then costs 2-3
GalSim convolutions per component instead of 12.

:func:`render_chunk` is a module-level function of plain arrays, so it runs in worker processes.
"""
from __future__ import annotations

import galsim
import numpy as np

MAX_COMPONENTS = 4
# Component kinds.
NONE, POINT, SERSIC, DISC, KNOTS, TAIL = 0, 1, 2, 3, 4, 5
KIND_NAMES = {NONE: "none", POINT: "point", SERSIC: "sersic", DISC: "disc", KNOTS: "knots", TAIL: "tail"}
MOFFAT_BETA = 3.5
# Sersic indices are rounded to this step: GalSim tabulates each index once per process (10 ms),
# after which drawing is ~1 ms.
SERSIC_STEP = 0.1
# Sky level in electrons per pixel: sets the source Poisson noise relative to the sky's.
SKY_ELECTRONS = 400.0
_GSPARAMS = galsim.GSParams(folding_threshold=5e-3, maxk_threshold=5e-3, maximum_fft_size=4096)


def psf_classes(fwhm_factor: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Group bands into ``n_classes`` PSF classes by their seeing factor; returns (class of each
    band, mean factor of each class)."""
    n_classes = max(1, min(n_classes, len(fwhm_factor)))
    order = np.argsort(fwhm_factor)
    band_class = np.empty(len(fwhm_factor), dtype=np.int64)
    for index, members in enumerate(np.array_split(order, n_classes)):
        band_class[members] = index
    factors = np.array([fwhm_factor[band_class == c].mean() for c in range(n_classes)])
    return band_class, factors


def _profile(kind: int, sersic_n: float, hlr: float, g1: float, g2: float, dx: float, dy: float,
             n_knots: int, seed: int):
    """Unit-flux GalSim profile of one component (sizes and offsets in arcsec)."""
    if kind == POINT:
        return galsim.DeltaFunction(flux=1.0)
    if kind == SERSIC:
        n = float(np.clip(np.round(sersic_n / SERSIC_STEP) * SERSIC_STEP, 0.5, 6.2))
        profile = galsim.Sersic(n=n, half_light_radius=hlr, gsparams=_GSPARAMS)
    elif kind in (DISC, TAIL):
        profile = galsim.Exponential(half_light_radius=hlr, gsparams=_GSPARAMS)
    elif kind == KNOTS:
        profile = galsim.RandomKnots(npoints=int(n_knots), half_light_radius=hlr, flux=1.0,
                                     rng=galsim.BaseDeviate(int(seed)), gsparams=_GSPARAMS)
    else:
        raise ValueError(f"unknown component kind {kind}")
    g = np.hypot(g1, g2)
    if g > 0.95:  # GalSim refuses |g| >= 1
        g1, g2 = g1 * 0.95 / g, g2 * 0.95 / g
    return profile.shear(g1=float(g1), g2=float(g2)).shift(float(dx), float(dy))


def render_object(components: dict, index: int, band_flux: np.ndarray, seeing: float, centre: tuple,
                  band_class: np.ndarray, class_factor: np.ndarray, size: int, pixel_scale: float) -> np.ndarray:
    """Noise-free image (n_bands, size, size) of object ``index``.

    components: arrays (n_objects, MAX_COMPONENTS) ``kind``, ``sersic_n``, ``hlr`` [arcsec],
    ``g1``, ``g2``, ``dx``, ``dy`` [arcsec], ``n_knots``, ``seed``; band_flux: (MAX_COMPONENTS,
    n_bands) fluxes in image units; centre: sub-pixel offset of the object [pixels].
    """
    n_bands = band_flux.shape[1]
    image = np.zeros((n_bands, size, size), dtype=np.float64)
    psfs = [galsim.Moffat(beta=MOFFAT_BETA, fwhm=float(seeing * factor), gsparams=_GSPARAMS)
            for factor in class_factor]
    for slot in range(MAX_COMPONENTS):
        kind = int(components["kind"][index, slot])
        if kind == NONE or not np.any(band_flux[slot] > 0):
            continue
        profile = _profile(kind, *(components[key][index, slot] for key in
                                   ("sersic_n", "hlr", "g1", "g2", "dx", "dy", "n_knots", "seed")))
        for psf_class, psf in enumerate(psfs):
            bands = np.flatnonzero(band_class == psf_class)
            if bands.size == 0:
                continue
            drawn = galsim.Convolve(profile, psf, gsparams=_GSPARAMS).drawImage(
                nx=size, ny=size, scale=pixel_scale, offset=centre, method="auto").array
            image[bands] += band_flux[slot, bands, None, None] * drawn[None]
    return image


def render_chunk(start: int, components: dict, band_flux: np.ndarray, seeing: np.ndarray, centre: np.ndarray,
                 band_class: np.ndarray, class_factor: np.ndarray, sky_sigma: np.ndarray, size: int,
                 pixel_scale: float, seed: int, noise: bool) -> np.ndarray:
    """Images (n, n_bands, size, size) float32 of objects ``start .. start + n`` (arrays given for
    those objects only). Noise: the sky's Gaussian ``sky_sigma`` per band plus the source's Poisson
    noise, from a generator seeded by (seed, object index), so the result does not depend on how
    the objects are split between processes."""
    n = len(seeing)
    out = np.empty((n, band_flux.shape[2], size, size), dtype=np.float32)
    gain = SKY_ELECTRONS / sky_sigma ** 2  # electrons per image unit, per band
    for i in range(n):
        image = render_object(components, i, band_flux[i], float(seeing[i]), tuple(centre[i]), band_class,
                              class_factor, size, pixel_scale)
        if noise:
            rng = np.random.default_rng([seed, 7919, start + i])
            variance = sky_sigma[:, None, None] ** 2 + np.clip(image, 0, None) / gain[:, None, None]
            image = image + rng.normal(size=image.shape) * np.sqrt(variance)
        out[i] = image
    return out
