"""One star's multi-band cutout as an array ``(n_bands, h, w)`` float32 with its band names.

Layouts (through :mod:`astrocore.data.readers.images`): one multi-extension FITS (one 2-d HDU per
band), one FITS holding a cube (bands, h, w) with a BANDS keyword, one FITS per band
(:func:`read_cutouts`), or a PNG / JPEG (three colour channels - which cannot stand in for ugriz,
so a model that needs five bands refuses it with a clear message). Size limits and errors are
those of the image reader (:class:`~astrocore.data.dataset.DataError`).
"""
from __future__ import annotations

import numpy as np

from ..dataset import DataError
from .images import read_band_files, read_image_file
from .limits import guard

MAX_CUTOUT_SIDE = 256


def _finish(images: np.ndarray, bands: tuple, where: str, expected_bands) -> tuple[np.ndarray, tuple]:
    if images.shape[0] != 1:
        raise DataError(f"{where}: expected one star's cutout; the file holds {images.shape[0]}.")
    cube = np.asarray(images[0], np.float32)
    if max(cube.shape[1:]) > MAX_CUTOUT_SIDE:
        raise DataError(f"{where}: cutouts may be at most {MAX_CUTOUT_SIDE} pixels on a side; got "
                        f"{cube.shape[1]} x {cube.shape[2]}.")
    bands = tuple(str(b).strip() for b in bands)
    if expected_bands is not None:
        expected = tuple(expected_bands)
        if len(bands) != len(expected):
            kind = " (a PNG / JPEG holds only colour channels)" if bands == ("R", "G", "B") else ""
            raise DataError(f"{where}: expected {len(expected)} bands ({', '.join(expected)}); got {len(bands)} "
                            f"({', '.join(bands)}){kind}. Give a FITS with one extension per band, blue to red.")
        lower = tuple(b.lower() for b in bands)
        if set(lower) == {b.lower() for b in expected}:  # named bands: put them in the expected order
            cube = cube[[lower.index(b.lower()) for b in expected]]
        bands = expected
    return cube, bands


@guard
def read_cutout(source, name: str | None = None, expected_bands=None) -> tuple[np.ndarray, tuple]:
    """One cutout file (path, bytes or upload) -> ``(array (n_bands, h, w) float32, bands)``.
    With ``expected_bands`` (e.g. ``("u", "g", "r", "i", "z")``) the band count must match and
    named bands are reordered to it."""
    dataset = read_image_file(source, name)
    return _finish(dataset.images, dataset.bands, str(dataset.provenance.get("file", name or "cutout")),
                   expected_bands)


@guard
def read_cutouts(sources, names=None, expected_bands=None) -> tuple[np.ndarray, tuple]:
    """One FITS file per band (blue to red, or named by their FILTER keyword) -> one cutout."""
    dataset = read_band_files(sources, names)
    return _finish(dataset.images, dataset.bands, str(dataset.provenance.get("file", "band files")), expected_bands)


def write_cutout(path, cube: np.ndarray, bands=("u", "g", "r", "i", "z"), pixel_scale_arcsec: float = 0.396):
    """Write one cutout (n_bands, h, w) as a multi-extension FITS, one image HDU per band (EXTNAME
    and FILTER = band name, PIXSCALE in arcsec)."""
    from astropy.io import fits  # lazy: only writers need it here

    hdus = [fits.PrimaryHDU()]
    for plane, band in zip(np.asarray(cube, np.float32), bands):
        hdu = fits.ImageHDU(plane, name=band)
        hdu.header["FILTER"] = band
        hdu.header["PIXSCALE"] = pixel_scale_arcsec
        hdu.header["BUNIT"] = "nanomaggy"
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path
