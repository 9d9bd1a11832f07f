"""Aperture photometry of multi-band cutouts with photutils: the magnitudes the self-supervised
pretext task regresses (Martinazzo et al. 2020: magnitudes / 30, objects with any magnitude error
above 0.1 dropped).

Each cutout is measured in one circular aperture at its centre, the same in every band, whose
radius follows the object's light profile like SExtractor's AUTO (Kron) aperture: 2.5 times the
first moment of the radial light distribution of the noise-weighted sum of the bands, never
smaller than the seeing disc. The aperture weights are photutils' exact pixel overlaps
(:class:`photutils.aperture.CircularAperture`), cached per radius, so a large set is measured with
one matrix product per radius instead of one call per object and band. The noise of every band of
every cutout is measured from its border pixels (median absolute deviation), so real cutouts
without a noise model are measured the same way.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from photutils.aperture import CircularAperture

ZERO_POINT = 30.0
MAGNITUDE_SCALE = 30.0  # the paper's pretext targets are magnitude / 30
MAX_ERROR = 0.1  # the paper's cut: drop objects with any magnitude error above this [mag]
_RADIUS_STEP = 0.25  # aperture radii are rounded to this [pixels] so masks are shared


@lru_cache(maxsize=512)
def aperture_weights(size: int, radius: float) -> np.ndarray:
    """Exact overlap (size, size) of each pixel with a circle of ``radius`` pixels at the cutout's centre."""
    centre = (size - 1) / 2.0
    mask = CircularAperture((centre, centre), r=radius).to_mask(method="exact")
    weights = mask.to_image((size, size))
    return np.asarray(weights, dtype=np.float64)


def border_noise(images: np.ndarray, width: int = 3) -> np.ndarray:
    """Noise per pixel (n, n_bands) from each cutout's outer frame of ``width`` pixels (1.4826 x
    median absolute deviation, robust to stray sources)."""
    n, n_bands, h, w = images.shape
    frame = np.ones((h, w), dtype=bool)
    frame[width:h - width, width:w - width] = False
    pixels = images[:, :, frame]
    median = np.median(pixels, axis=2, keepdims=True)
    return 1.4826 * np.median(np.abs(pixels - median), axis=2)


def kron_radius(images: np.ndarray, noise: np.ndarray, pixel_scale: float, min_radius_arcsec: float = 1.5,
                kron_factor: float = 2.5) -> np.ndarray:
    """Aperture radius per object [pixels]: ``kron_factor`` x the first radial moment of the
    noise-weighted band sum within 1/3 of the cutout, at least ``min_radius_arcsec``."""
    n, _, h, w = images.shape
    weights = 1.0 / np.maximum(noise, 1e-12) ** 2
    detection = (images * weights[:, :, None, None]).sum(axis=1)
    y, x = np.mgrid[0:h, 0:w]
    radius = np.hypot(x - (w - 1) / 2, y - (h - 1) / 2)
    inside = radius <= min(h, w) / 3
    light = np.clip(detection, 0, None) * inside
    r1 = (light * radius).sum(axis=(1, 2)) / np.maximum(light.sum(axis=(1, 2)), 1e-30)
    low = min_radius_arcsec / pixel_scale
    high = min(h, w) / 2 - 1
    return np.clip(kron_factor * r1, low, high)


def measure(images: np.ndarray, pixel_scale: float, radius: np.ndarray | None = None,
            gain: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Aperture photometry of cutouts (n, n_bands, h, w) in image units of zero point 30.

    Returns ``flux``, ``flux_error`` (image units), ``magnitude``, ``magnitude_error`` (AB mag;
    NaN / inf where the flux is not positive), ``radius`` (pixels) and ``noise`` (per pixel),
    each (n, n_bands) except radius (n,). ``gain`` (per band, electrons per image unit) adds the
    source's Poisson noise to the errors when known.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4:
        raise ValueError(f"measure() expects cutouts (n, n_bands, h, w); got shape {images.shape}.")
    n, n_bands, h, w = images.shape
    if h != w:
        raise ValueError(f"cutouts must be square; got {h} x {w}.")
    noise = border_noise(images)
    if radius is None:
        radius = kron_radius(images, noise, pixel_scale)
    radius = np.maximum(np.round(np.asarray(radius, float) / _RADIUS_STEP) * _RADIUS_STEP, _RADIUS_STEP)
    flux = np.zeros((n, n_bands))
    area = np.zeros(n)
    for value in np.unique(radius):
        members = np.flatnonzero(radius == value)
        weights = aperture_weights(h, float(value))
        flux[members] = np.einsum("nbij,ij->nb", images[members], weights)
        area[members] = (weights ** 2).sum()
    variance = noise ** 2 * area[:, None]
    if gain is not None:
        variance = variance + np.clip(flux, 0, None) / np.asarray(gain, float)[None, :]
    error = np.sqrt(variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = flux > 0
        magnitude = np.where(positive, ZERO_POINT - 2.5 * np.log10(np.where(positive, flux, 1.0)), np.nan)
        magnitude_error = np.where(positive, 2.5 / np.log(10) * error / np.where(positive, flux, 1.0), np.inf)
    return {"flux": flux, "flux_error": error, "magnitude": magnitude, "magnitude_error": magnitude_error,
            "radius": radius, "noise": noise}


def pretext_targets(dataset, max_error: float = MAX_ERROR,
                    fixed_apertures_arcsec: tuple[float, ...] = ()) -> dict[str, np.ndarray]:
    """The pretext task of a Dataset of cutouts: measured magnitudes and errors per band, the
    paper's cut (``keep``: every band's error <= ``max_error``), the targets ``magnitude / 30``,
    and the true magnitudes when the dataset has ``mag_true_<band>`` labels (NaN otherwise).

    ``fixed_apertures_arcsec`` (radii [arcsec]) adds, after the Kron magnitudes, the magnitudes in
    each of those fixed circular apertures (``aperture_magnitude``, (n, k, n_bands)) to the targets,
    which then hold n_bands x (1 + k) columns; the cut applies to them too.
    """
    if dataset.images is None:
        raise ValueError("pretext_targets() needs a dataset with cutouts (images).")
    gain = (dataset.provenance or {}).get("gain_e_per_unit")  # simulated data: the noise model's gain
    pixel_scale = dataset.pixel_scale_arcsec or 1.0
    result = measure(dataset.images, pixel_scale, gain=gain)
    keep = np.all(np.isfinite(result["magnitude"]) & (result["magnitude_error"] <= max_error), axis=1)
    fixed = []
    for radius_arcsec in fixed_apertures_arcsec:
        if radius_arcsec <= 0:
            raise ValueError(f"fixed aperture radii must be > 0 arcsec; got {radius_arcsec}.")
        aperture = measure(dataset.images, pixel_scale, radius=np.full(len(dataset), radius_arcsec / pixel_scale),
                           gain=gain)
        keep &= np.all(np.isfinite(aperture["magnitude"]) & (aperture["magnitude_error"] <= max_error), axis=1)
        fixed.append(aperture["magnitude"])
    true = np.full_like(result["magnitude"], np.nan)
    for b, band in enumerate(dataset.bands):
        column = f"mag_true_{band}"
        if column in dataset.labels.colnames:
            true[:, b] = np.asarray(dataset.labels[column], float)
    n_bands = result["magnitude"].shape[1]
    return {**result, "keep": keep, "targets": (np.concatenate([result["magnitude"], *fixed], axis=1) / MAGNITUDE_SCALE).astype(np.float32),
            "aperture_magnitude": np.stack(fixed, axis=1) if fixed else np.zeros((len(keep), 0, n_bands)),
            "true_magnitude": true}
