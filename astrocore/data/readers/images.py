"""Readers of image cutouts into :class:`~astrocore.data.dataset.Dataset` (``images`` only).

* :func:`read_image_file` - one file (a path, or bytes with its name): a FITS file with the bands
  as image extensions of equal shape (multi-extension), one extension holding a cube (n_bands, h, w)
  or a stack (n_objects, n_bands, h, w), an astrocore Dataset FITS, or a PNG / JPEG (RGB, pixel
  values 0-1, bands ``R``, ``G``, ``B``);
* :func:`read_band_files` - one FITS per band (the same HDU of each file is one object's band);
* :func:`fit_to_size` - centre-crop cutouts to a model's size.

Every malformed input raises :class:`~astrocore.data.dataset.DataError` saying what was expected
and what arrived. Limits: files up to :data:`MAX_FILE_BYTES`, sides of 8 to :data:`MAX_SIDE`
pixels, at most :data:`MAX_BANDS` bands.
"""
from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..dataset import DataError, Dataset
from . import limits
from .common import _load_dataset
from .limits import guard

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_SIDE = 1024
MIN_SIDE = 8
MAX_BANDS = 64
MAX_OBJECTS = 10_000
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
_BAND_KEYWORDS = ("FILTER", "BAND", "FILTNAM1", "EXTNAME")


def _payload(source, name: str | None) -> tuple[bytes, str]:
    """(bytes, file name) of a path or of bytes / a file-like object (an upload) named ``name``."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"No file at {path}.")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DataError(f"{path.name} is {path.stat().st_size / 1e6:.1f} MB; cutout files may be at most "
                            f"{MAX_FILE_BYTES / 1e6:.0f} MB.")
        return path.read_bytes(), name or path.name
    data = source.read() if hasattr(source, "read") else bytes(source)
    name = name or getattr(source, "name", None) or "upload"
    if len(data) > MAX_FILE_BYTES:
        raise DataError(f"{name} is {len(data) / 1e6:.1f} MB; cutout files may be at most "
                        f"{MAX_FILE_BYTES / 1e6:.0f} MB.")
    if not data:
        raise DataError(f"{name} is empty.")
    return data, name


def _check_images(images: np.ndarray, where: str) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    n, n_bands, h, w = images.shape
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise DataError(f"{where}: cutouts must be {MIN_SIDE}-{MAX_SIDE} pixels on a side; got {h} x {w}.")
    if n_bands > MAX_BANDS:
        raise DataError(f"{where}: at most {MAX_BANDS} bands; got {n_bands}.")
    if n > MAX_OBJECTS:
        raise DataError(f"{where}: at most {MAX_OBJECTS} cutouts per file; got {n}.")
    bad = ~np.isfinite(images)
    if bad.any():
        if bad.mean() > 0.25:
            raise DataError(f"{where}: {100 * bad.mean():.0f} % of the pixels are NaN or infinite.")
        images = np.where(bad, 0.0, images).astype(np.float32)  # masked pixels count as sky (0)
    return images


def _band_name(header, default: str) -> str:
    for keyword in _BAND_KEYWORDS:
        value = header.get(keyword)
        if value not in (None, "", "PRIMARY"):
            return str(value).strip()
    return default


def _dataset(images: np.ndarray, bands, where: str, pixel_scale=None, extra: dict | None = None) -> Dataset:
    images = _check_images(images, where)
    labels = Table({"id": np.arange(len(images)), "file": np.full(len(images), Path(where).name)})
    return Dataset(None, None, labels, provenance={"reader": "images", "file": where, **(extra or {})},
                   images=images, bands=tuple(bands), pixel_scale_arcsec=pixel_scale)


def _pixel_scale(header) -> float | None:
    for keyword in ("PIXSCALE", "PIXSCAL1", "SECPIX"):
        if keyword in header:
            try:
                return float(header[keyword])
            except (TypeError, ValueError):
                return None
    if "CD1_1" in header or "CDELT1" in header:
        value = abs(float(header.get("CD1_1", header.get("CDELT1", 0.0)))) * 3600
        return value or None
    return None


def _read_fits(data: bytes, name: str, hdu: int | None) -> Dataset:
    data = limits.fits_payload(data, name)
    hdul = limits.open_fits_bytes(data, name)
    with hdul:
        names = [h.name for h in hdul]
        if "IMAGES" in names and "LABELS" in names:  # an astrocore Dataset file
            copy = _temporary_copy(data, name)
            try:
                return _load_dataset(copy)
            except DataError as error:
                raise DataError(f"{name}: {str(error).replace(str(copy), 'the file')}") from None
            finally:
                copy.unlink(missing_ok=True)
        images = [(i, h) for i, h in enumerate(hdul) if h.is_image and h.data is not None and h.data.ndim >= 2]
        if not images:
            raise DataError(f"{name} has no image extension (expected 2-d bands, a 3-d cube or a 4-d stack).")
        if hdu is not None:
            if not 0 <= hdu < len(hdul) or hdul[hdu].data is None or not hdul[hdu].is_image:
                raise DataError(f"{name}: HDU {hdu} is not an image; image HDUs are {[i for i, _ in images]}.")
            images = [(hdu, hdul[hdu])]
        scale = _pixel_scale(images[0][1].header)
        if len(images) == 1:
            index, single = images[0]
            array = np.asarray(single.data, dtype=np.float32)
            if array.ndim == 2:
                return _dataset(array[None, None], (_band_name(single.header, "band1"),), name, scale)
            if array.ndim == 3:
                bands = [b for b in str(single.header.get("BANDS", "")).split(",") if b]
                bands = bands if len(bands) == array.shape[0] else [f"band{i + 1}" for i in range(array.shape[0])]
                return _dataset(array[None], bands, name, scale)
            if array.ndim == 4:
                bands = [b for b in str(single.header.get("BANDS", "")).split(",") if b]
                bands = bands if len(bands) == array.shape[1] else [f"band{i + 1}" for i in range(array.shape[1])]
                return _dataset(array, bands, name, scale)
            raise DataError(f"{name}: an image of {array.ndim} dimensions; expected 2 (one band), 3 (bands, h, w) "
                            "or 4 (objects, bands, h, w).")
        shapes = {np.asarray(h.data).shape for _, h in images}
        if len(shapes) > 1 or any(len(s) != 2 for s in shapes):
            raise DataError(f"{name}: {len(images)} image extensions of different shapes "
                            f"({', '.join('x'.join(map(str, s)) for s in sorted(shapes))}); a multi-band cutout "
                            "needs one 2-d extension per band, all the same size (or choose one HDU).")
        cube = np.stack([np.asarray(h.data, dtype=np.float32) for _, h in images])
        bands = [_band_name(h.header, f"band{k + 1}") for k, (_, h) in enumerate(images)]
        if len(set(bands)) != len(bands):
            bands = [f"band{k + 1}" for k in range(len(images))]
        return _dataset(cube[None], bands, name, scale)


def _temporary_copy(data: bytes, name: str) -> Path:
    handle = tempfile.NamedTemporaryFile(suffix=".fits", delete=False)
    with handle:
        handle.write(data)
    return Path(handle.name)


def _read_raster(data: bytes, name: str) -> Dataset:
    from PIL import Image, UnidentifiedImageError  # lazy: only PNG/JPEG uploads need Pillow

    try:
        with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as picture:
            width, height = picture.size
            if max(width, height) > MAX_SIDE or min(width, height) < MIN_SIDE:
                raise DataError(f"{name}: images must be {MIN_SIDE}-{MAX_SIDE} pixels on a side; got {width} x {height}.")
            rgb = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise DataError(f"{name} is not a readable PNG or JPEG image ({error}).") from None
    return _dataset(rgb.transpose(2, 0, 1)[None], ("R", "G", "B"), name, extra={"rgb": True})


@guard
def read_image_file(source, name: str | None = None, hdu: int | None = None) -> Dataset:
    """Cutouts from one file (a path, or bytes / an uploaded file with ``name``); see the module
    docstring for the layouts. ``hdu`` picks one image extension of a FITS file."""
    data, name = _payload(source, name)
    lower = name.lower()
    if lower.endswith(RASTER_SUFFIXES) or data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff":
        return _read_raster(data, name)
    if lower.endswith(FITS_SUFFIXES) or data[:6] == b"SIMPLE":
        return _read_fits(data, name, hdu)
    raise DataError(f"{name}: expected a FITS file ({', '.join(FITS_SUFFIXES)}) or a PNG / JPEG image; "
                    "the name and content match neither.")


@guard
def read_band_files(sources, names=None, bands=None, hdu: int = 0) -> Dataset:
    """One FITS file per band (blue to red): HDU ``hdu`` of every file is one band of the cutout.
    ``bands`` names them (default: each file's FILTER keyword or its name)."""
    sources = list(sources)
    if not sources:
        raise DataError("read_band_files() needs at least one file.")
    names = list(names) if names is not None else [None] * len(sources)
    planes, found = [], []
    for source, name in zip(sources, names):
        if isinstance(source, tuple):  # (name, bytes), as uploads arrive
            name, source = source
        single = read_image_file(source, name, hdu=hdu)
        if single.images.shape[:2] != (1, 1):
            raise DataError(f"{single.provenance['file']}: expected one band per file; got "
                            f"{single.images.shape[1]} bands of {single.images.shape[0]} cutouts.")
        planes.append(single.images[0, 0])
        found.append(single.bands[0] if not single.bands[0].startswith("band") else Path(single.provenance["file"]).stem)
    shapes = {plane.shape for plane in planes}
    if len(shapes) > 1:
        raise DataError(f"The band files have different sizes ({', '.join('x'.join(map(str, s)) for s in shapes)}); "
                        "all bands of a cutout must be the same size.")
    bands = list(bands) if bands is not None else found
    if len(bands) != len(planes) or len(set(bands)) != len(bands):
        raise DataError(f"{len(planes)} band files need {len(planes)} distinct band names; got {bands}.")
    return _dataset(np.stack(planes)[None], bands, ", ".join(Path(str(n or s)).name for n, s in zip(names, sources)))


def fit_to_size(images: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop cutouts (n, b, h, w) to ``size`` x ``size``; smaller cutouts are refused."""
    n, b, h, w = images.shape
    if h < size or w < size:
        raise DataError(f"This model needs cutouts of at least {size} x {size} pixels; got {h} x {w}.")
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(images[:, :, top:top + size, left:left + size])
