"""Hostile-input guards shared by every reader: sizes checked *before* anything is allocated.

* :func:`max_values` / :func:`max_bytes` - the budget of one file (values after decoding, bytes
  after decompression); environment overrides ``ASTROCORE_MAX_VALUES`` and
  ``ASTROCORE_MAX_DECOMPRESSED_MB``;
* :func:`gunzip` - gzip decompression streamed with its output capped (gzip bombs);
* :func:`check_fits` - walks the FITS headers card by card (no astropy) and refuses NAXIS, BITPIX,
  NAXISn, PCOUNT / GCOUNT, TFORMn and ZNAXISn that declare more data than the budget or than the
  file holds, before astropy allocates anything; :func:`open_fits_bytes` then opens the checked
  bytes with every HDU's data read (truncation fails there, as a :class:`DataError`);
* :func:`load_npy` / :func:`load_npz` - ``.npy`` headers parsed with ``np.lib.format.read_magic`` /
  ``read_array_header_*`` and checked (no object or structured dtypes, so no pickle; shape within the
  budget) before the data are read, zip members measured while decompressing;
* :func:`check_zip` - the zip's central directory is bounded before ``zipfile`` parses it, and
  :func:`safe_extract` unpacks refusing unsafe or over-long names, links, encryption, unsupported
  compression and bombs (sizes counted while decompressing, never trusted from the directory);
* :func:`check_text` - row, column and cell counts of a CSV / text table, by a streaming scan;
* :func:`guard` - the last net of a public reader: an unexpected library exception becomes a
  :class:`DataError` naming the file (flagged ``unexpected``, so the fuzz suite can count them).
"""
from __future__ import annotations

import functools
import io
import lzma
import os
import re
import stat
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..dataset import DataError

FITS_BLOCK = 2880
MAX_HDUS = 1000
MAX_HEADER_CARDS = 20_000
MAX_ZIP_ENTRIES = 10_000
MAX_GZIP_MEMBERS = 1000
MAX_NAME_CHARS = 255  # one path component inside an archive
MAX_PATH_CHARS = 1024
MAX_TEXT_COLUMNS = 100_000
SUPPORTED_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                         zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError,
                   RuntimeError, lzma.LZMAError, OSError, ValueError, UnicodeDecodeError, struct.error,
                   KeyError, IndexError, OverflowError)
_CHUNK = 1 << 20


# ============================================================================ budget
def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def max_values() -> int:
    """Values one file may decode to (env ``ASTROCORE_MAX_VALUES``; default 2**25 ~ 33.5 M, e.g.
    4,600 APOGEE spectra of 7214 pixels, 256 MB as float64)."""
    return int(_env_number("ASTROCORE_MAX_VALUES", 2 ** 25))


def max_bytes() -> int:
    """Bytes one file may decompress to (env ``ASTROCORE_MAX_DECOMPRESSED_MB``; default 320 MB)."""
    return int(_env_number("ASTROCORE_MAX_DECOMPRESSED_MB", 320) * 1024 * 1024)


def max_text_cells() -> int:
    """Cells of a CSV / text table (a parsed cell costs far more than a value): max_values() / 2."""
    return max(1, max_values() // 2)


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:,.0f} MB"


def _too_many(name: str, what: str, count: int, limit: int) -> DataError:
    return DataError(f"{name}: {what} declares {count:,} values, more than the {limit:,} one file may hold "
                     "(set ASTROCORE_MAX_VALUES to raise the limit for trusted files).")


# ============================================================================ gzip
def is_gzip(data) -> bool:
    return bytes(data[:2]) == b"\x1f\x8b"


def gunzip(data: bytes, name: str, limit: int | None = None) -> bytes:
    """Decompress gzip ``data`` (every member), refusing output beyond ``limit`` bytes while streaming."""
    limit = max_bytes() if limit is None else limit
    view, position, out, total, members = memoryview(data), 0, [], 0, 0
    try:
        while position < len(view) and is_gzip(view[position:position + 2]):
            members += 1
            if members > MAX_GZIP_MEMBERS:
                raise DataError(f"{name}: more than {MAX_GZIP_MEMBERS} gzip members; refused.")
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = b""
            while not decompressor.eof:
                if not pending:
                    pending = view[position:position + _CHUNK]
                    position += len(pending)
                chunk = decompressor.decompress(pending, _CHUNK)
                pending = decompressor.unconsumed_tail
                total += len(chunk)
                if total > limit:
                    raise DataError(f"{name}: the gzip data unpack to more than {_mb(limit)} (a gzip bomb or a file "
                                    "too large to read); refused while decompressing.")
                out.append(chunk)
                if not chunk and not pending and position >= len(view):
                    raise DataError(f"{name}: the gzip stream is truncated (it ends before its end marker).")
            position -= len(decompressor.unused_data)
    except zlib.error as error:
        raise DataError(f"{name}: corrupt gzip data ({error}).") from None
    if members == 0:
        raise DataError(f"{name} is not gzip data.")
    if total == 0:
        raise DataError(f"{name}: the gzip stream holds no data.")
    return b"".join(out)


# ============================================================================ FITS
_BITPIX = {8: 1, 16: 2, 32: 4, 64: 8, -32: 4, -64: 8}
_TFORM = re.compile(r"^\s*(\d*)\s*([LXBIJKAEDCMPQ])", re.IGNORECASE)


def _card_value(card: str):
    """The value of a header card as a string (comment stripped), or None for a commentary card."""
    if card[8:10] != "= ":
        return None
    text = card[10:].lstrip()
    if text.startswith("'"):  # a string: up to the closing quote ('' is an escaped quote)
        match = re.match(r"'((?:[^']|'')*)'", text)
        return (match.group(1) if match else text[1:]).replace("''", "'").strip()
    return text.split("/", 1)[0].strip()


def _integer(header: dict, key: str, name: str, hdu: int, default=None) -> int:
    if key not in header:
        if default is None:
            raise DataError(f"{name}: HDU {hdu} has no {key} keyword (a FITS header needs it).")
        return default
    text = header[key]
    try:
        value = int(text)
    except (TypeError, ValueError):
        try:
            number = float(str(text).replace("D", "E"))
        except ValueError:
            raise DataError(f"{name}: HDU {hdu} {key} = {str(text)[:30]!r} is not an integer.") from None
        if not np.isfinite(number) or number != int(number):
            raise DataError(f"{name}: HDU {hdu} {key} = {str(text)[:30]!r} is not an integer.")
        value = int(number)
    return value


def _read_header(handle, name: str, hdu: int) -> dict | None:
    """Keywords (first occurrence) of the header starting at the handle's position; None at end of file."""
    header, cards = {}, 0
    while True:
        block = handle.read(FITS_BLOCK)
        if not block:
            if cards == 0:
                return None
            raise DataError(f"{name}: HDU {hdu}'s header has no END card (the file is truncated).")
        if len(block) < FITS_BLOCK:
            if cards == 0 and not block.strip(b"\x00 "):
                return None  # trailing padding
            raise DataError(f"{name}: HDU {hdu}'s header is truncated ({len(block)} bytes of a 2880-byte block).")
        text = block.decode("ascii", errors="replace")
        for start in range(0, FITS_BLOCK, 80):
            card = text[start:start + 80]
            cards += 1
            key = card[:8].strip().upper()
            if key == "END":
                return header
            if key and key not in header:
                value = _card_value(card)
                if value is not None:
                    header[key] = value
        if cards > MAX_HEADER_CARDS:
            raise DataError(f"{name}: HDU {hdu}'s header runs past {MAX_HEADER_CARDS:,} cards without an END card.")
        if hdu == 0 and cards == 36 and "SIMPLE" not in header:
            raise DataError(f"{name} is not a FITS file (its first card is not SIMPLE = T).")


def _table_values(header: dict, name: str, hdu: int, rows: int) -> int:
    """Values a binary table decodes to: rows x the sum of its columns' repeat counts."""
    fields = _integer(header, "TFIELDS", name, hdu, default=0)
    if not 0 <= fields <= 999:
        raise DataError(f"{name}: HDU {hdu} TFIELDS = {fields}; FITS tables have 0-999 columns.")
    per_row = 0
    for k in range(1, fields + 1):
        form = str(header.get(f"TFORM{k}", "")).strip("' ")
        match = _TFORM.match(form)
        if not match:
            continue  # astropy reports malformed formats itself
        repeat = int(match.group(1)) if match.group(1) else 1
        per_row += repeat * (2 if match.group(2).upper() in "CM" else 1)
    return rows * per_row


def _check_hdu(header: dict, name: str, hdu: int, limit_values: int, limit_bytes: int) -> int:
    """Bytes of data the HDU declares (checked against the budget)."""
    bitpix = _integer(header, "BITPIX", name, hdu)
    if bitpix not in _BITPIX:
        raise DataError(f"{name}: HDU {hdu} BITPIX = {bitpix}; FITS allows 8, 16, 32, 64, -32 or -64.")
    naxis = _integer(header, "NAXIS", name, hdu)
    if not 0 <= naxis <= 999:
        raise DataError(f"{name}: HDU {hdu} NAXIS = {naxis}; FITS allows 0-999 axes.")
    axes = []
    for k in range(1, naxis + 1):
        length = _integer(header, f"NAXIS{k}", name, hdu)
        if length < 0:
            raise DataError(f"{name}: HDU {hdu} NAXIS{k} = {length} is negative.")
        axes.append(length)
    pcount = _integer(header, "PCOUNT", name, hdu, default=0)
    gcount = _integer(header, "GCOUNT", name, hdu, default=1)
    if pcount < 0 or gcount < 0:
        raise DataError(f"{name}: HDU {hdu} PCOUNT / GCOUNT = {pcount} / {gcount} must not be negative.")
    groups = str(header.get("GROUPS", "")).upper() == "T" and axes[:1] == [0]
    counted = axes[1:] if groups else axes
    n = int(np.prod([int(a) for a in counted], dtype=object)) if counted else 0
    values = gcount * (pcount + n)
    nbytes = _BITPIX[bitpix] * values
    xtension = str(header.get("XTENSION", "")).strip("' ").upper()
    if xtension in ("BINTABLE", "A3DTABLE") and naxis >= 2:
        values = _table_values(header, name, hdu, axes[1]) + pcount
    elif xtension == "TABLE" and naxis >= 2:
        values = axes[1] * max(1, _integer(header, "TFIELDS", name, hdu, default=1))
    if nbytes > limit_bytes:
        raise DataError(f"{name}: HDU {hdu} declares {_mb(nbytes)} of data (NAXIS = {naxis}, axes {axes[:6]}, "
                        f"BITPIX = {bitpix}); the limit is {_mb(limit_bytes)}.")
    if values > limit_values:
        raise _too_many(name, f"HDU {hdu}", values, limit_values)
    if str(header.get("ZIMAGE", "")).upper() == "T":  # a tile-compressed image: its unpacked size counts
        znaxis = _integer(header, "ZNAXIS", name, hdu, default=0)
        if not 0 <= znaxis <= 999:
            raise DataError(f"{name}: HDU {hdu} ZNAXIS = {znaxis}; FITS allows 0-999 axes.")
        zaxes = [_integer(header, f"ZNAXIS{k}", name, hdu) for k in range(1, znaxis + 1)]
        if any(a < 0 for a in zaxes):
            raise DataError(f"{name}: HDU {hdu} has a negative ZNAXISn.")
        unpacked = int(np.prod([int(a) for a in zaxes], dtype=object)) if zaxes else 0
        if unpacked > limit_values:
            raise _too_many(name, f"the compressed image in HDU {hdu}", unpacked, limit_values)
    return nbytes


def check_fits(source, name: str) -> int:
    """Walk the headers of a FITS file (bytes or a path) and check each HDU's declared data against the
    budget and against the file's length; returns the number of HDUs. Raises :class:`DataError`."""
    limit_values, limit_bytes = max_values(), max_bytes()
    if isinstance(source, (bytes, bytearray, memoryview)):
        handle, size = io.BytesIO(source), len(source)
    else:
        handle, size = open(source, "rb"), os.path.getsize(source)
    with handle:
        hdu, position = 0, 0
        while True:
            handle.seek(position)
            header = _read_header(handle, name, hdu)
            if header is None:
                break
            if hdu > 0 and "XTENSION" not in header:
                break  # trailing bytes that are not an extension; astropy ignores them too
            nbytes = _check_hdu(header, name, hdu, limit_values, limit_bytes)
            start = handle.tell()
            if start + nbytes > size:
                raise DataError(f"{name}: HDU {hdu} declares {nbytes:,} bytes of data but the file ends "
                                f"{size - start:,} bytes after its header (the file is truncated or its NAXISn "
                                "are wrong).")
            position = start + -(-nbytes // FITS_BLOCK) * FITS_BLOCK
            hdu += 1
            if hdu > MAX_HDUS:
                raise DataError(f"{name} has more than {MAX_HDUS} HDUs.")
            if position >= size:
                break
    if hdu == 0:
        raise DataError(f"{name} is not a FITS file (no header).")
    return hdu


_FITS_ERRORS = (OSError, ValueError, TypeError, IndexError, KeyError, AttributeError, ZeroDivisionError,
                OverflowError, UnicodeDecodeError, fits.VerifyError, struct.error, zlib.error)


def fits_payload(data: bytes, name: str) -> bytes:
    """The bytes of a FITS file (gzip decompressed with a cap), with its headers checked."""
    if is_gzip(data):
        data = gunzip(data, name)
    if not bytes(data[:9]) == b"SIMPLE  =":
        raise DataError(f"{name} is not a FITS file (it does not start with 'SIMPLE  =').")
    check_fits(data, name)
    return data


def open_fits_bytes(data: bytes, name: str) -> fits.HDUList:
    """An HDUList from checked FITS bytes (see :func:`fits_payload`) with every HDU's data read now,
    so a truncated or corrupt file fails here as a :class:`DataError`."""
    try:
        data = fits_payload(data, name)
    except DataError as error:
        detail = str(error).removeprefix(name).lstrip(": ")
        raise DataError(f"{name} is not a readable FITS file ({detail.rstrip('.')}).") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=False)
            hdul.verify("silentfix")
    except _FITS_ERRORS as error:
        raise DataError(f"{name} could not be read as FITS: {error}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for hdu in hdul:
                _ = hdu.data
                if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)) and hdu.data is not None:
                    for column in hdu.columns.names:  # decode every column now (bad TFORM / TSCAL / heap)
                        _ = hdu.data[column]
    except _FITS_ERRORS as error:
        hdul.close()
        raise DataError(f"{name} is truncated or corrupt ({type(error).__name__}: {error}).") from None
    return hdul


# ============================================================================ npy / npz
_ALLOWED_KINDS = "biufcSU"


def _npy_header(handle, name: str):
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle, max_header_size=100_000)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle, max_header_size=100_000)
        else:
            raise DataError(f"{name}: .npy format version {version} is not supported (1.0 or 2.0).")
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - numpy parses the header dict with literal_eval / tokenize
        raise DataError(f"{name}: not a valid .npy array header ({type(error).__name__}: {str(error)[:200]}).") from None
    if not isinstance(shape, tuple) or any(not isinstance(s, int) or s < 0 for s in shape):
        raise DataError(f"{name}: the .npy header declares the shape {str(shape)[:80]}; expected non-negative integers.")
    if dtype.hasobject:
        raise DataError(f"{name} stores Python objects (a pickled object array); astrocore never unpickles files. "
                        "Re-save it as a plain array (e.g. np.save(path, np.asarray(ids, dtype=str))).")
    if dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise DataError(f"{name} has dtype {dtype}; expected numbers or strings.")
    return shape, fortran, dtype


def _read_exact(handle, nbytes: int, name: str) -> bytearray:
    buffer = bytearray(nbytes)
    view, filled = memoryview(buffer), 0
    while filled < nbytes:
        got = handle.readinto(view[filled:filled + _CHUNK]) if hasattr(handle, "readinto") else None
        if got is None:
            chunk = handle.read(min(_CHUNK, nbytes - filled))
            got = len(chunk)
            view[filled:filled + got] = chunk
        if not got:
            raise DataError(f"{name} is truncated: its header declares {nbytes:,} bytes of data, the file holds "
                            f"{filled:,}.")
        filled += got
    return buffer


def read_npy_stream(handle, name: str, budget: list | None = None) -> np.ndarray:
    """One array from an open .npy stream: header checked, then exactly the declared bytes read."""
    shape, fortran, dtype = _npy_header(handle, name)
    count = int(np.prod([int(s) for s in shape], dtype=object)) if shape else 1
    nbytes = count * dtype.itemsize
    if count > max_values():
        raise _too_many(name, f"its header (shape {shape})", count, max_values())
    limit = max_bytes() if budget is None else budget[0]
    if nbytes > limit:
        raise DataError(f"{name}: its header declares {_mb(nbytes)} (shape {shape}, {dtype}); the limit is "
                        f"{_mb(max_bytes())}.")
    if budget is not None:
        budget[0] -= nbytes
    buffer = _read_exact(handle, nbytes, name)
    array = np.frombuffer(buffer, dtype=dtype, count=count)
    return array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)


def load_npy(path, name: str | None = None) -> np.ndarray:
    """A ``.npy`` file read without pickle, its header checked before any allocation."""
    name = name or str(path)
    try:
        with open(path, "rb") as handle:
            return read_npy_stream(handle, name)
    except DataError:
        raise
    except OSError as error:
        raise DataError(f"{name} could not be read: {error}") from None


def check_zip(data_or_path, name: str) -> None:
    """Bound a zip's central directory (entries and size) before ``zipfile`` parses it."""
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        handle, size = io.BytesIO(data_or_path), len(data_or_path)
    else:
        handle, size = open(data_or_path, "rb"), os.path.getsize(data_or_path)
    with handle:
        tail = min(size, 22 + 65535)
        handle.seek(size - tail)
        end = handle.read(tail)
        at = end.rfind(b"PK\x05\x06")
        if at < 0 or len(end) - at < 22:
            raise DataError(f"{name} is not a readable zip archive (no end-of-archive record; truncated?).")
        entries, directory = struct.unpack("<HI", end[at + 10:at + 16])
        if entries == 0xFFFF or directory == 0xFFFFFFFF:
            locator = end[at - 20:at] if at >= 20 else b""
            if locator[:4] == b"PK\x06\x07":
                offset = struct.unpack("<Q", locator[8:16])[0]
                if 0 <= offset <= size - 56:
                    handle.seek(offset)
                    record = handle.read(56)
                    if record[:4] == b"PK\x06\x06":
                        entries, directory = struct.unpack("<QQ", record[32:48])
    if entries > MAX_ZIP_ENTRIES:
        raise DataError(f"{name} holds {entries:,} entries; at most {MAX_ZIP_ENTRIES:,} are accepted.")
    if directory > 64 * 1024 * 1024:
        raise DataError(f"{name}: its directory declares {_mb(directory)}; refused.")


def _check_member(info: zipfile.ZipInfo, name: str) -> None:
    if info.flag_bits & 0x1:
        raise DataError(f"{name}: the entry {info.filename[:80]!r} is encrypted; upload an archive without a password.")
    if info.compress_type not in SUPPORTED_ZIP_METHODS:
        raise DataError(f"{name}: the entry {info.filename[:80]!r} uses compression method {info.compress_type}, "
                        f"which is not supported (use {', '.join(SUPPORTED_ZIP_METHODS.values())}).")


def load_npz(path_or_bytes, name: str) -> dict:
    """The arrays of a ``.npz`` (path or bytes): every member's header checked, at most
    :func:`max_bytes` decompressed in total (measured while reading), no pickle."""
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    check_zip(path_or_bytes, name)
    budget = [max_bytes()]
    arrays = {}
    try:
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                _check_member(info, name)
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if key in arrays:
                    raise DataError(f"{name}: the key {key[:80]!r} appears twice.")
                with archive.open(info) as member:
                    arrays[key] = read_npy_stream(member, f"{name}[{key[:80]}]", budget)
    except DataError:
        raise
    except _ARCHIVE_ERRORS as error:
        raise DataError(f"{name} could not be read as .npz ({type(error).__name__}: {str(error)[:200]}).") from None
    if not arrays:
        raise DataError(f"{name} is a zip without arrays; expected a .npz of named arrays.")
    return arrays


def check_npz(path, name: str) -> None:
    """Check a ``.npz``'s members (encryption, compression, .npy headers, declared sizes) without reading
    their data; :meth:`numpy.load` then reads at most the declared bytes."""
    check_zip(path, name)
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                _check_member(info, name)
                with archive.open(info) as member:
                    shape, _, dtype = _npy_header(member, f"{name}[{info.filename[:80]}]")
                count = int(np.prod([int(s) for s in shape], dtype=object)) if shape else 1
                if count > max_values():
                    raise _too_many(name, f"the array {info.filename[:80]!r} (shape {shape})", count, max_values())
                total += count * dtype.itemsize
                if total > max_bytes():
                    raise DataError(f"{name}: its arrays declare more than {_mb(max_bytes())}; refused.")
    except DataError:
        raise
    except _ARCHIVE_ERRORS as error:
        raise DataError(f"{name} could not be read as .npz ({type(error).__name__}: {str(error)[:200]}).") from None


# ============================================================================ zip extraction
def _member_path(info: zipfile.ZipInfo, name: str) -> tuple[str, ...]:
    raw = info.filename
    text = raw.replace("\\", "/")
    if "\x00" in text:
        raise DataError(f"{name}: the entry {raw[:80]!r} has a NUL character in its name.")
    if len(text) > MAX_PATH_CHARS:
        raise DataError(f"{name}: an entry name is {len(text)} characters long (at most {MAX_PATH_CHARS}).")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise DataError(f"{name}: the zip contains an unsafe path {raw[:80]!r} (an absolute path).")
    parts = tuple(p for p in text.split("/") if p not in ("", "."))
    if ".." in parts:
        raise DataError(f"{name}: the zip contains an unsafe path {raw[:80]!r} (a '..' component).")
    for part in parts:
        if len(part.encode("utf-8", errors="surrogateescape")) > MAX_NAME_CHARS:
            raise DataError(f"{name}: the entry name {part[:40]!r}... is {len(part)} characters long "
                            f"(at most {MAX_NAME_CHARS}).")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DataError(f"{name}: the entry {raw[:80]!r} is a symbolic link; links are not accepted.")
    return parts


def safe_extract(data: bytes, target: Path, name: str, limit: int | None = None) -> None:
    """Unpack zip ``data`` into the (new, empty) folder ``target``: names checked (no absolute paths, '..',
    NULs, links, names over 255 characters), encrypted entries and unsupported compression refused, and
    the bytes written counted while decompressing (at most ``limit``, default :func:`max_bytes`)."""
    limit = max_bytes() if limit is None else limit
    check_zip(data, name)
    target = Path(target).resolve()
    total = 0
    seen = set()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [(info, _member_path(info, name)) for info in archive.infolist()]
            for info, parts in members:
                if not parts:
                    continue
                key = "/".join(parts).lower()
                if key in seen:
                    raise DataError(f"{name}: the entry {info.filename[:80]!r} appears twice.")
                seen.add(key)
                destination = target.joinpath(*parts)
                if target not in destination.resolve().parents:
                    raise DataError(f"{name}: the zip contains an unsafe path {info.filename[:80]!r}.")
                if info.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                _check_member(info, name)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(destination, "xb") as sink:
                    while True:
                        chunk = source.read(_CHUNK)
                        if not chunk:
                            break
                        total += len(chunk)
                        if total > limit:
                            raise DataError(f"{name} unpacks to more than {_mb(limit)} (counted while "
                                            "decompressing); refused as a zip bomb or too large.")
                        sink.write(chunk)
    except DataError:
        raise
    except FileExistsError:
        raise DataError(f"{name}: two entries unpack to the same file.") from None
    except _ARCHIVE_ERRORS as error:
        raise DataError(f"{name} is not a readable zip archive ({type(error).__name__}: {str(error)[:200]}).") from None


# ============================================================================ text tables
def check_text(source, name: str, max_line: int | None = None) -> None:
    """Count the rows, columns (commas, tabs or whitespace-separated fields) and cells of a text table
    (bytes or a path) in one streaming pass; refuse tables beyond the budget."""
    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
    cells_limit, rows, cells, widest = max_text_cells(), 0, 0, 0
    with handle:
        while True:
            line = handle.readline(64 * _CHUNK)
            if not line:
                break
            if b"\x00" in line:
                raise DataError(f"{name} holds binary data (NUL bytes); expected a text (CSV) table.")
            if max_line is not None and len(line) > max_line:
                raise DataError(f"{name}: line {rows + 1} is longer than {max_line:,} characters; not a table of this kind.")
            if line.startswith(b"#") or not line.strip():
                continue
            fields = max(line.count(b",") + 1, line.count(b"\t") + 1, len(line.split()) if len(line) < 65536 else 1)
            widest = max(widest, fields)
            rows += 1
            cells += fields
            if widest > MAX_TEXT_COLUMNS:
                raise DataError(f"{name}: line {rows} has {fields:,} fields; at most {MAX_TEXT_COLUMNS:,} columns "
                                "are accepted.")
            if cells > cells_limit:
                raise DataError(f"{name}: the table holds more than {cells_limit:,} cells (read up to line {rows}); "
                                "set ASTROCORE_MAX_VALUES to raise the limit for trusted files.")


# ============================================================================ the last net
def _display_name(args, kwargs) -> str:
    name = kwargs.get("name")
    if name:
        return str(name)
    if len(args) > 1 and isinstance(args[1], str) and args[1]:
        return args[1]
    if args:
        first = args[0]
        if isinstance(first, (str, Path)):
            return str(first)
        if isinstance(first, (list, tuple)):
            return "the band files"
        return getattr(first, "name", None) or "the file"
    return "the file"


def guard(function):
    """Turn any exception other than :class:`DataError` (and MemoryError, left visible) raised by a
    reader into a :class:`DataError` naming the file; such errors carry ``unexpected = True``."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (DataError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 - the net of a reader facing any file
            wrapped = DataError(f"{_display_name(args, kwargs)} could not be read ({type(error).__name__}: "
                                f"{str(error)[:300]}).")
            wrapped.unexpected = True
            raise wrapped from error
    return wrapper
