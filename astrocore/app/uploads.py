"""Uploads: validation (extension, size), safe storage and extraction, and reading uploaded
spectra or Payne emulators into a Dataset with clear messages."""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from ..data import load_source
from ..data.cache import cache_dir
from ..data.dataset import DataError, Dataset
from ..data.readers import check_compatible
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


def _safe_extract(archive: zipfile.ZipFile, target: Path, max_total_mb: float = 2 * MAX_UPLOAD_MB) -> None:
    """Extract a zip refusing absolute paths, '..' components and zip bombs."""
    total = 0
    for member in archive.infolist():
        parts = Path(member.filename).parts
        if member.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise UploadError(f"the zip contains an unsafe path {member.filename!r}.")
        total += member.file_size
        if total > max_total_mb * 1024 * 1024:
            raise UploadError(f"the zip unpacks to more than {max_total_mb:.0f} MB.")
    archive.extractall(target)


def store_upload(name: str, data: bytes, allowed=SPECTRA_EXTENSIONS, max_mb: float = MAX_UPLOAD_MB) -> Path:
    """Validate and save an upload under the cache (content-addressed, so re-uploads are free).

    A zip is unpacked and the folder holding ``X.npy`` (GANDALF) or ``spectra.npz`` (astrocore) is
    returned; other files are returned as saved.
    """
    extension = validate_upload(name, len(data), allowed, max_mb)
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = uploads_dir() / digest
    safe_name = re.sub(r"[^0-9A-Za-z_.-]+", "_", Path(name).name) or f"upload{extension}"
    if extension == ".zip":
        unpacked = folder / "unpacked"
        if not unpacked.exists():
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    staging = Path(tempfile.mkdtemp(dir=uploads_dir(), prefix=".unzip-"))
                    try:
                        _safe_extract(archive, staging)
                        folder.mkdir(parents=True, exist_ok=True)
                        os.replace(staging, unpacked)
                    finally:
                        shutil.rmtree(staging, ignore_errors=True)
            except zipfile.BadZipFile as error:
                raise UploadError(f"{name} is not a readable zip archive ({error}).") from error
        return _dataset_root(unpacked, name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe_name
    if not path.exists():
        partial = folder / f".{safe_name}.part"
        partial.write_bytes(data)
        os.replace(partial, path)
    return path


def _dataset_root(folder: Path, name: str) -> Path:
    for marker in ("X.npy", "spectra.npz"):
        hits = sorted(p.parent for p in folder.rglob(marker) if "__MACOSX" not in p.parts)
        if hits:
            return min(hits, key=lambda p: len(p.parts))
    found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())[:8]
    raise UploadError(f"{name}: the zip holds no GANDALF folder (X.npy, params.npy, ids.npy, axis_labels.npy, "
                      f"wavelength.npy) nor an astrocore dataset (spectra.npz); it contains {found or 'nothing'}.")


ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"


def example_files() -> list[Path]:
    """Small example spectra shipped in assets/ (made by the project's own simulator)."""
    return sorted(p for p in ASSETS_DIR.glob("example_*") if p.is_file()) if ASSETS_DIR.exists() else []


def local_spectra_source(path: str) -> dict:
    """The source dict of spectra at a local path, checked for existence and type (read later)."""
    location = Path(str(path).strip()).expanduser()
    if not location.exists():
        raise UploadError(f"{path}: no such file or folder on this machine.")
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
    except Exception as error:  # an unexpected reader failure still reads as a message, not a traceback
        raise UploadError(f"{name} could not be read: {type(error).__name__}: {error}") from error
    return dataset, source


def store_payne_upload(name: str, data: bytes, max_mb: float = MAX_UPLOAD_MB) -> Path:
    """Validate and store an uploaded Payne emulator; checks that it loads."""
    path = store_upload(name, data, PAYNE_EXTENSIONS, max_mb)
    check_payne(path, name)
    return path


def check_payne(path, name: str | None = None) -> None:
    path = Path(path)
    name = name or path.name
    if not path.exists():
        raise UploadError(f"{name}: no such file.")
    try:
        PayneEmulator.load(path)
    except DataError as error:
        raise UploadError(_strip_paths(str(error), path, name)) from error
    except Exception as error:
        raise UploadError(f"{name} is not a Payne emulator .npz: {type(error).__name__}: {error}") from error


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
