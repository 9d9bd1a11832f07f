"""The one container every simulator and reader returns.

A :class:`Dataset` holds, per object, a spectrum (a 2-d array with one row per object, with optional
per-pixel flux errors and the wavelength axis in Angstrom) and/or a multi-band cutout (a 4-d array
``(n, n_bands, height, width)`` with band names and the pixel scale in arcsec), an astropy Table of
labels with units (one row per object; a catalogue of line fluxes is a Dataset of labels alone) and
the provenance of the data (generator, version, seed, parameters). It saves to a single FITS file
or to a folder of ``.npz`` + ``.ecsv`` files and loads back bit-identically.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.utils.exceptions import AstropyUserWarning

from .store import StoreWriter, is_lazy, is_store, open_store, take_rows, wants_store

# Physical units of the standard stellar labels; readers and simulators use these column names.
LABEL_UNITS = {
    "teff": "K",
    "logg": "dex",  # log10 of surface gravity in cm s^-2
    "feh": "dex",
    "afe": "dex",
}
LABEL_TITLES = {
    "teff": "Teff [K]",
    "logg": "log g [dex]",
    "feh": "[Fe/H] [dex]",
    "afe": "[alpha/Fe] [dex]",
}


class DataError(ValueError):
    """Raised when input data is malformed: the message says what was expected and what arrived."""


def _as_2d_float(name: str, values, n_pixels: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise DataError(f"{name} must be a 2-d array (n_objects, n_pixels); got shape {array.shape}.")
    if n_pixels is not None and array.shape[1] != n_pixels:
        raise DataError(
            f"{name} has {array.shape[1]} pixels per spectrum but the wavelength axis has {n_pixels}."
        )
    return array


@dataclass
class Dataset:
    """Spectra with their wavelength axis, labels and provenance.

    Parameters
    ----------
    spectra : array (n_objects, n_pixels), or None for data without spectra
        Flux, continuum-normalised unless the provenance says otherwise.
    wavelength : array (n_pixels,), or None when ``spectra`` is None
        Wavelength of each pixel in Angstrom, strictly increasing.
    labels : astropy.table.Table
        One row per object; columns such as ``id``, ``teff`` [K], ``logg`` [dex], ``feh`` [dex],
        ``afe`` [dex]. Units are attached from :data:`LABEL_UNITS` where missing.
    errors : array (n_objects, n_pixels), optional
        1-sigma flux uncertainty per pixel.
    provenance : dict
        JSON-serialisable description of where the data came from.
    images : array (n_objects, n_bands, height, width), optional
        Multi-band cutouts (flux per pixel in the units the provenance names).
    bands : tuple of str
        One name per image band, blue to red (e.g. ``("u", "g", "r", "i", "z")``).
    pixel_scale_arcsec : float, optional
        Angular size of an image pixel [arcsec].
    """

    spectra: np.ndarray | None
    wavelength: np.ndarray | None
    labels: Table
    errors: np.ndarray | None = None
    provenance: dict = field(default_factory=dict)
    images: np.ndarray | None = None
    bands: tuple = ()
    pixel_scale_arcsec: float | None = None

    def __post_init__(self):
        if not isinstance(self.labels, Table):
            self.labels = Table(self.labels)
        self._check_images()
        if self.spectra is None:
            if self.wavelength is not None or self.errors is not None:
                raise DataError("A dataset without spectra cannot have a wavelength axis or flux errors.")
            self._check_labels(len(self.labels) if self.images is None else len(self.images))
            return
        self.wavelength = np.asarray(self.wavelength, dtype=np.float64).ravel()
        if self.wavelength.size == 0:
            raise DataError("The wavelength axis is empty.")
        if not np.all(np.isfinite(self.wavelength)):
            raise DataError("The wavelength axis contains NaN or infinite values.")
        if np.any(np.diff(self.wavelength) <= 0):
            raise DataError("The wavelength axis must be strictly increasing (Angstrom).")
        if is_lazy(self.spectra):  # on disk (a store): checked when it was written, never loaded whole
            if self.spectra.ndim != 2 or self.spectra.shape[1] != self.wavelength.size:
                raise DataError(f"The stored spectra have shape {self.spectra.shape}; the wavelength axis has "
                                f"{self.wavelength.size} pixels.")
            self._check_labels(len(self.spectra))
            return
        self.spectra = _as_2d_float("spectra", self.spectra, self.wavelength.size)
        if not np.all(np.isfinite(self.spectra)):
            n_bad = int((~np.isfinite(self.spectra)).any(axis=1).sum())
            raise DataError(
                f"{n_bad} spectra contain NaN or infinite flux; mask or interpolate them before use."
            )
        if self.errors is not None:
            self.errors = _as_2d_float("errors", self.errors, self.wavelength.size)
            if self.errors.shape != self.spectra.shape:
                raise DataError(
                    f"errors have shape {self.errors.shape}, spectra {self.spectra.shape}."
                )
        if self.images is not None and len(self.images) != len(self.spectra):
            raise DataError(f"{len(self.images)} cutouts for {len(self.spectra)} spectra; they must match.")
        self._check_labels(len(self.spectra))

    def _check_images(self) -> None:
        if self.images is None:
            self.bands = tuple(self.bands or ())
            return
        images = np.asarray(self.images, dtype=np.float32)
        if images.ndim != 4:
            raise DataError(f"images must be an array (n_objects, n_bands, height, width); got shape {images.shape}.")
        if not np.all(np.isfinite(images)):
            raise DataError("images contain NaN or infinite pixels; mask or fill them before use.")
        bands = tuple(str(band) for band in (self.bands or [f"band{i + 1}" for i in range(images.shape[1])]))
        if len(bands) != images.shape[1]:
            raise DataError(f"images have {images.shape[1]} bands but {len(bands)} band names ({', '.join(bands)}).")
        if self.pixel_scale_arcsec is not None and not self.pixel_scale_arcsec > 0:
            raise DataError(f"pixel_scale_arcsec must be positive; got {self.pixel_scale_arcsec}.")
        self.images, self.bands = images, bands

    def _check_labels(self, n_objects: int) -> None:
        if len(self.labels) != n_objects:
            raise DataError(f"{len(self.labels)} label rows for {n_objects} objects; they must match.")
        if "id" not in self.labels.colnames:
            self.labels["id"] = np.arange(n_objects)
        for name, unit in LABEL_UNITS.items():
            if name in self.labels.colnames and self.labels[name].unit is None:
                self.labels[name].unit = unit

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_pixels(self) -> int:
        """Pixels per spectrum (0 for data without spectra)."""
        return 0 if self.wavelength is None else self.wavelength.size

    def label_array(self, names) -> np.ndarray:
        """Labels ``names`` as a float array (n_objects, len(names)) in their physical units."""
        missing = [n for n in names if n not in self.labels.colnames]
        if missing:
            raise DataError(
                f"labels {missing} are not in this dataset; it has {self.labels.colnames}."
            )
        return np.stack([np.asarray(self.labels[n], dtype=np.float64) for n in names], axis=1)

    def subset(self, index) -> "Dataset":
        """A new Dataset with the rows ``index`` (integer array or boolean mask)."""
        index = np.asarray(index)
        return Dataset(
            spectra=None if self.spectra is None else take_rows(self.spectra, index),
            wavelength=self.wavelength,
            labels=self.labels[index],
            errors=None if self.errors is None else self.errors[index],
            provenance=dict(self.provenance),
            images=None if self.images is None else self.images[index],
            bands=self.bands,
            pixel_scale_arcsec=self.pixel_scale_arcsec,
        )

    def summary(self) -> dict:
        """Counts and ranges, for display."""
        ranges = {}
        for name in self.labels.colnames:
            column = np.asarray(self.labels[name])
            if column.dtype.kind in "fi" and name != "id":
                ranges[name] = (float(np.min(column)), float(np.max(column)))
        summary = {
            "n_objects": len(self),
            "n_pixels": self.n_pixels,
            "wavelength_aa": None if self.wavelength is None else (float(self.wavelength[0]), float(self.wavelength[-1])),
            "label_ranges": ranges,
            "generator": self.provenance.get("generator", "unknown"),
        }
        if self.images is not None:
            summary.update(bands=list(self.bands), image_shape=list(self.images.shape[2:]),
                           pixel_scale_arcsec=self.pixel_scale_arcsec)
        return summary

    # ------------------------------------------------------------------ I/O
    def save(self, path) -> Path:
        """Save atomically to ``path``: a ``.fits`` file, or a folder (spectra.npz + labels.ecsv)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if wants_store(path):
            return write_store(path, [self])
        if path.suffix.lower() in (".fits", ".fit", ".fits.gz"):
            return self._save_fits(path)
        return self._save_folder(path)

    def _save_fits(self, path: Path) -> Path:
        with warnings.catch_warnings():
            # "dex" has no FITS form; load() re-attaches units from LABEL_UNITS.
            warnings.simplefilter("ignore", AstropyUserWarning)
            primary = fits.PrimaryHDU(self.spectra)
            primary.header["ACORE"] = ("dataset", "astrocore Dataset file")
            hdus = [primary]
            if self.spectra is not None:
                primary.header["BUNIT"] = ("normalised flux", "flux unit")
                hdus.append(fits.ImageHDU(self.wavelength, name="WAVELENGTH"))
                hdus[1].header["BUNIT"] = "Angstrom"
            hdus.append(fits.BinTableHDU(self.labels, name="LABELS"))
            if self.images is not None:
                images = fits.ImageHDU(self.images, name="IMAGES")
                images.header["BANDS"] = (",".join(self.bands), "band names, blue to red")
                if self.pixel_scale_arcsec is not None:
                    images.header["PIXSCALE"] = (float(self.pixel_scale_arcsec), "arcsec per pixel")
                hdus.append(images)
            if self.errors is not None:
                hdus.append(fits.ImageHDU(self.errors, name="ERRORS"))
            provenance = np.frombuffer(json.dumps(self.provenance).encode(), dtype=np.uint8)
            hdus.append(fits.ImageHDU(provenance, name="PROVENANCE"))
            handle, tmp_name = tempfile.mkstemp(dir=path.parent, suffix=".fits.part")
            os.close(handle)
            try:
                fits.HDUList(hdus).writeto(tmp_name, overwrite=True)
                os.replace(tmp_name, path)
            finally:
                if os.path.exists(tmp_name):
                    os.remove(tmp_name)
        return path

    def _save_folder(self, path: Path) -> Path:
        tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        arrays = {}
        if self.spectra is not None:
            arrays.update(spectra=self.spectra, wavelength=self.wavelength)
        if self.errors is not None:
            arrays["errors"] = self.errors
        if self.images is not None:
            arrays.update(images=self.images, bands=np.array(self.bands, dtype=str),
                          pixel_scale_arcsec=np.float64(np.nan if self.pixel_scale_arcsec is None
                                                        else self.pixel_scale_arcsec))
        np.savez(tmp_dir / "spectra.npz", **arrays)
        self.labels.write(tmp_dir / "labels.ecsv", format="ascii.ecsv", overwrite=True)
        (tmp_dir / "provenance.json").write_text(json.dumps(self.provenance, indent=2))
        if path.exists():
            import shutil

            shutil.rmtree(path)
        os.replace(tmp_dir, path)
        return path

    @classmethod
    def load(cls, path) -> "Dataset":
        """Load a Dataset written by :meth:`save` (a ``.fits`` file or a folder)."""
        path = Path(path)
        if not path.exists():
            raise DataError(f"No dataset at {path}.")
        if is_store(path):
            return open_dataset_store(path)
        if path.is_dir():
            if not (path / "spectra.npz").exists():
                raise DataError(f"{path} is a folder without spectra.npz; not an astrocore dataset.")
            with np.load(path / "spectra.npz", allow_pickle=False) as arrays:
                spectra = arrays["spectra"] if "spectra" in arrays else None
                wavelength = arrays["wavelength"] if "wavelength" in arrays else None
                errors = arrays["errors"] if "errors" in arrays else None
                images = arrays["images"] if "images" in arrays else None
                bands = tuple(str(b) for b in arrays["bands"]) if "bands" in arrays else ()
                scale = float(arrays["pixel_scale_arcsec"]) if "pixel_scale_arcsec" in arrays else float("nan")
            labels = Table.read(path / "labels.ecsv", format="ascii.ecsv")
            provenance_file = path / "provenance.json"
            provenance = json.loads(provenance_file.read_text()) if provenance_file.exists() else {}
            return cls(spectra, wavelength, labels, errors, provenance, images, bands,
                       None if np.isnan(scale) else scale)
        try:
            with fits.open(path, memmap=False) as hdul:
                names = [hdu.name for hdu in hdul]
                tagged = hdul[0].header.get("ACORE") == "dataset"  # a catalogue: labels alone
                if "LABELS" not in names or ("WAVELENGTH" not in names and "IMAGES" not in names and not tagged):
                    raise DataError(
                        f"{path} is FITS but not an astrocore dataset (needs a LABELS extension and "
                        "WAVELENGTH or IMAGES); use astrocore.data.readers for survey files."
                    )
                has_spectra = "WAVELENGTH" in names
                spectra = np.array(hdul[0].data) if has_spectra else None
                wavelength = np.array(hdul["WAVELENGTH"].data) if has_spectra else None
                images, bands, scale = None, (), None
                if "IMAGES" in names:
                    images = np.array(hdul["IMAGES"].data)
                    header = hdul["IMAGES"].header
                    bands = tuple(b for b in str(header.get("BANDS", "")).split(",") if b)
                    scale = header.get("PIXSCALE")
                labels = Table(hdul["LABELS"].data)
                for column in hdul["LABELS"].columns:
                    if column.unit:
                        labels[column.name].unit = column.unit
                errors = np.array(hdul["ERRORS"].data) if "ERRORS" in names else None
                provenance = (
                    json.loads(bytes(hdul["PROVENANCE"].data).decode())
                    if "PROVENANCE" in names
                    else {}
                )
        except OSError as error:
            raise DataError(f"{path} could not be read as FITS: {error}") from error
        return cls(spectra, wavelength, labels, errors, provenance, images, bands, scale)


# ---------------------------------------------------------------------- on-disk (out-of-core) datasets
def write_store(path, parts, rows_per_shard: int = 8192) -> Path:
    """Write the Datasets ``parts`` (an iterable: one part in memory at a time) one after another
    as a store folder (:mod:`astrocore.data.store`): spectra (and errors) in ``.npy`` shards, the
    labels and provenance beside them. Parts must share the wavelength axis; the first part's
    provenance is kept. Returns the path."""
    writer = StoreWriter(path, rows_per_shard=rows_per_shard)
    labels, wavelength, provenance = [], None, None
    try:
        for part in parts:
            if part.spectra is None or part.images is not None:
                raise DataError("An on-disk store holds spectra (and their errors); this dataset has "
                                f"{'cutouts' if part.images is not None else 'no spectra'}.")
            if wavelength is None:
                wavelength, provenance = part.wavelength, dict(part.provenance)
            elif not np.array_equal(wavelength, part.wavelength):
                raise DataError("The parts of a store must share one wavelength axis.")
            arrays = {"spectra": np.asarray(part.spectra, np.float32)}
            if part.errors is not None:
                arrays["errors"] = np.asarray(part.errors, np.float32)
            writer.append(**arrays)
            labels.append(part.labels)
        if wavelength is None:
            raise DataError("Nothing to write: no parts.")
        table = vstack(labels, metadata_conflicts="silent") if len(labels) > 1 else labels[0]
        table.write(writer.folder / "labels.ecsv", format="ascii.ecsv", overwrite=True)
        np.save(writer.folder / "wavelength.npy", wavelength)
        (writer.folder / "provenance.json").write_text(json.dumps(provenance, indent=2))
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def open_dataset_store(path) -> Dataset:
    """A Dataset whose spectra (and errors) stay on disk in the store ``path`` (read per batch)."""
    path = Path(path)
    try:
        _, arrays = open_store(path)
        wavelength = np.load(path / "wavelength.npy", allow_pickle=False)
        labels = Table.read(path / "labels.ecsv", format="ascii.ecsv")
        provenance_file = path / "provenance.json"
        provenance = json.loads(provenance_file.read_text()) if provenance_file.exists() else {}
    except (OSError, ValueError) as error:
        raise DataError(f"{path} could not be read as an astrocore store: {error}") from error
    if "spectra" not in arrays:
        raise DataError(f"{path} is a store without spectra.")
    return Dataset(arrays["spectra"], wavelength, labels, arrays.get("errors"), provenance)
