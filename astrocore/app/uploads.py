"""Uploads: validation (extension, size), safe storage and extraction, and reading uploaded
spectra or Payne emulators into a Dataset with clear messages."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..data import load_source
from ..data.cache import cache_dir
from ..data.dataset import DataError, Dataset
from ..data.readers import check_compatible, limits
from ..data.simulators.payne import PayneEmulator
from .common import MAX_UPLOAD_MB, file_source


# ============================================================================ uploads
class UploadError(ValueError):
    """An uploaded file was refused; the message says why, in words for the page."""


SPECTRA_EXTENSIONS = (".fits", ".fit", ".fits.gz", ".fit.gz", ".csv", ".ecsv", ".txt", ".npz", ".zip")
PAYNE_EXTENSIONS = (".npz",)


def uploads_dir() -> Path:
    folder = cache_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _extension(name: str) -> str:
    lowered = name.lower()
    for extension in sorted(set(SPECTRA_EXTENSIONS + PAYNE_EXTENSIONS), key=len, reverse=True):
        if lowered.endswith(extension):
            return extension
    return Path(lowered).suffix


def validate_upload(name: str, size: int, allowed=SPECTRA_EXTENSIONS, max_mb: float = MAX_UPLOAD_MB) -> str:
    """Check name and size; returns the extension or raises :class:`UploadError`."""
    if not name:
        raise UploadError("The uploaded file has no name.")
    extension = _extension(name)
    if extension not in allowed:
        raise UploadError(f"{name}: files of type '{extension or '(none)'}' are not accepted here; "
                          f"upload one of {', '.join(allowed)}.")
    if size <= 0:
        raise UploadError(f"{name} is empty (0 bytes).")
    if size > max_mb * 1024 * 1024:
        raise UploadError(f"{name} is {size / 1024 / 1024:.0f} MB; the limit is {max_mb:.0f} MB.")
    return extension


def _safe_extract(data: bytes, target: Path, name: str, max_total_mb: float = 2 * MAX_UPLOAD_MB) -> None:
    """Unpack a zip refusing absolute paths, '..', links, over-long names, encrypted entries, unsupported
    compression and zip bombs (bytes counted while decompressing); see :func:`~astrocore.data.readers.limits.safe_extract`."""
    try:
        limits.safe_extract(data, target, name, limit=int(min(max_total_mb * 1024 * 1024, limits.max_bytes())))
    except DataError as error:
        raise UploadError(str(error)) from error


def _safe_name(name: str, extension: str) -> str:
    """The stored file name: letters, digits, '_', '.', '-' only, at most 100 characters, extension kept."""
    cleaned = re.sub(r"[^0-9A-Za-z_.-]+", "_", Path(str(name).replace("\\", "/")).name).lstrip(".")
    stem = cleaned[: len(cleaned) - len(extension)] if cleaned.lower().endswith(extension) else cleaned
    return (stem[: 100 - len(extension)] or "upload") + extension


def store_upload(name: str, data: bytes, allowed=SPECTRA_EXTENSIONS, max_mb: float = MAX_UPLOAD_MB) -> Path:
    """Validate and save an upload under the cache (content-addressed, so re-uploads are free).

    A zip is unpacked and the folder holding ``X.npy`` (GANDALF) or ``spectra.npz`` (astrocore) is
    returned; other files are returned as saved. Nothing is written outside the uploads folder.
    """
    extension = validate_upload(name, len(data), allowed, max_mb)
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = uploads_dir() / digest
    safe_name = _safe_name(name, extension)
    if extension == ".zip":
        unpacked = folder / "unpacked"
        if not unpacked.exists():
            staging = Path(tempfile.mkdtemp(dir=uploads_dir(), prefix=".unzip-"))
            try:
                _safe_extract(data, staging, _short(name))
                folder.mkdir(parents=True, exist_ok=True)
                os.replace(staging, unpacked)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return _dataset_root(unpacked, name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe_name
    if not path.exists():
        partial = folder / f".{safe_name}.part"
        partial.write_bytes(data)
        os.replace(partial, path)
    return path


def _short(name: str) -> str:
    return name if len(name) <= 80 else name[:60] + "…" + name[-15:]


def _dataset_root(folder: Path, name: str) -> Path:
    for marker in ("X.npy", "spectra.npz"):
        hits = sorted(p.parent for p in folder.rglob(marker) if "__MACOSX" not in p.parts)
        if hits:
            return min(hits, key=lambda p: len(p.parts))
    found = sorted(str(p.relative_to(folder))[:80] for p in folder.rglob("*") if p.is_file())[:8]
    raise UploadError(f"{_short(name)}: the zip holds no GANDALF folder (X.npy, params.npy, ids.npy, axis_labels.npy, "
                      f"wavelength.npy) nor an astrocore dataset (spectra.npz); it contains {found or 'nothing'}.")


PROJECT_ASSETS = Path(__file__).resolve().parents[2] / "assets"  # the checkout's example files
# The example spectra in assets/ (made by assets/make_assets.py); the other example_* files there are
# cutouts, a line catalogue and a BHB star for the other pages.
SPECTRA_EXAMPLES = ("example_apogee_spectra.fits", "example_gandalf_rvs.zip", "example_rvs_spectra.csv")


def example_files() -> list[Path]:
    """The example spectra files of the checkout's assets/ folder that exist."""
    return [PROJECT_ASSETS / name for name in SPECTRA_EXAMPLES if (PROJECT_ASSETS / name).is_file()]


def data_roots() -> list[Path]:
    """Folders whose files the local-path boxes may read: ``ASTROCORE_DATA_ROOT`` (one or more folders
    separated by ``os.pathsep``), else ``data/`` and ``assets/`` of the current directory and the
    project's own ``assets/``."""
    configured = os.environ.get("ASTROCORE_DATA_ROOT", "").strip()
    if configured:
        roots = [Path(p).expanduser() for p in configured.split(os.pathsep) if p.strip()]
    else:
        roots = [Path.cwd() / "data", Path.cwd() / "assets", PROJECT_ASSETS]
    return [root.resolve() for root in roots]


def inside_data_root(path, extra=()) -> Path:
    """``path`` resolved (links followed), or :class:`UploadError` when it lies outside the data roots."""
    text = str(path).strip()
    if not text or "\x00" in text:
        raise UploadError("Give a path to a file or folder.")
    location = Path(text).expanduser()
    if not location.is_absolute():
        location = Path.cwd() / location
    try:
        resolved = location.resolve()
    except (OSError, RuntimeError) as error:
        raise UploadError(f"{_short(text)}: not a usable path ({error}).") from error
    roots = data_roots() + [Path(r).resolve() for r in extra]
    if not any(resolved == root or root in resolved.parents for root in roots):
        shown = ", ".join(str(r) for r in roots[:3])
        raise UploadError(f"{_short(text)} is outside the data folders this app may read ({shown}); put the "
                          "file there, upload it, or set ASTROCORE_DATA_ROOT.")
    return resolved


def local_spectra_source(path: str) -> dict:
    """The source dict of spectra at a local path inside the data roots (:func:`data_roots`), checked for
    existence and type (read later)."""
    location = inside_data_root(path)
    if not location.exists():
        raise UploadError(f"{_short(str(path))}: no such file or folder in the data folders.")
    if location.is_file():
        validate_upload(location.name, location.stat().st_size, SPECTRA_EXTENSIONS, max_mb=float("inf"))
    return file_source(location)


def load_uploaded_spectra(name: str, data: bytes, max_mb: float = MAX_UPLOAD_MB) -> tuple[Dataset, dict]:
    """Validate, store and read uploaded spectra; every problem becomes an :class:`UploadError`."""
    path = store_upload(name, data, SPECTRA_EXTENSIONS, max_mb)
    try:
        dataset, source = load_source(str(path))
    except UploadError:
        raise
    except DataError as error:
        raise UploadError(_strip_paths(str(error), path, name)) from error
    except MemoryError as error:
        raise UploadError(f"{_short(name)} is too large to read in memory.") from error
    except Exception as error:  # an unexpected reader failure still reads as a message, not a traceback
        wrapped = UploadError(f"{_short(name)} could not be read: {type(error).__name__}: {str(error)[:300]}")
        wrapped.unexpected = True
        raise wrapped from error
    return dataset, source


def store_payne_upload(name: str, data: bytes, max_mb: float = MAX_UPLOAD_MB) -> Path:
    """Validate and store an uploaded Payne emulator; checks that it loads."""
    path = store_upload(name, data, PAYNE_EXTENSIONS, max_mb)
    check_payne(path, name)
    return path


def check_payne(path, name: str | None = None) -> None:
    """Check that ``path`` (inside the data roots or the uploads folder) is a Payne emulator: the .npz's
    headers and sizes first (:func:`~astrocore.data.readers.limits.load_npz`), then its arrays."""
    path = inside_data_root(path, extra=[uploads_dir()])
    name = name or path.name
    if not path.is_file():
        raise UploadError(f"{_short(name)}: no such file.")
    try:
        arrays = limits.load_npz(path, name)
    except DataError as error:
        raise UploadError(f"{_short(name)} is not a Payne emulator .npz: "
                          f"{_strip_paths(str(error), path, name)}") from error
    strings = sorted(k for k, v in arrays.items() if v.dtype.kind not in "biuf" and k != "label_names")
    if strings:
        raise UploadError(f"{_short(name)} is not a Payne emulator .npz: the arrays {strings[:5]} are not numeric.")
    try:
        PayneEmulator.from_arrays(arrays, path=path)
    except DataError as error:
        raise UploadError(_strip_paths(str(error), path, name)) from error
    except MemoryError as error:
        raise UploadError(f"{_short(name)} is too large to read in memory.") from error
    except Exception as error:  # noqa: BLE001 - a message, never a traceback
        wrapped = UploadError(f"{_short(name)} is not a Payne emulator .npz: {type(error).__name__}: {str(error)[:300]}")
        wrapped.unexpected = True
        raise wrapped from error


def _strip_paths(message: str, path: Path, name: str) -> str:
    """Replace the cache path of an upload by the name the user gave it."""
    for candidate in (str(path.resolve()), str(path)):
        message = message.replace(candidate, name)
    return message


def compatibility_error(dataset: Dataset, run) -> str | None:
    """Why ``dataset`` cannot go through ``run`` (wavelength grid, missing labels), or None."""
    try:
        check_compatible(dataset, run.wavelength)
    except DataError as error:
        return str(error)
    missing = [name for name in run.conditional if name not in dataset.labels.colnames]
    if missing:
        return (f"the spectra have no {', '.join(missing)} label(s); the model encodes a star at its "
                f"{', '.join(run.conditional)}, so these labels are needed.")
    return None
