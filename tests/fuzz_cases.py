"""Seeded hostile files for every reader and upload path, and the sandboxed worker that runs them.

``make_case(reader, index, seed)`` builds case ``index`` of a reader deterministically: the case kinds
of the reader are taken in turn (so any 40 consecutive cases cover them all) and each kind draws its
details from ``numpy.random.default_rng((seed, reader, index))``. Kinds: random bytes (with and without
the right magic), empty files, truncated and byte-mutated real files (assets/ and ../shared/data when
present), wrong shapes and dtypes, NaN / inf, huge declared sizes (FITS NAXISn / BITPIX / PCOUNT /
TFORM, .npy headers), gzip and zip bombs, corrupt gzip, '../' and absolute names in archives, 300-character
names, encrypted entries, unsupported compression, corrupt streams, object (pickled) arrays, CSVs
with unquoted commas, ragged rows and huge column counts, PNG headers declaring huge images.

``run_cases`` runs cases in worker processes (``python tests/fuzz_cases.py --worker``), one case at a
time each, with a hard time limit (the worker is killed and the case is a *hang*), an address-space
limit (``RLIMIT_AS`` = the worker's size after its imports + 1.5 GiB) and the per-case peak RSS read
from ``/proc/self/status`` after resetting it (``/proc/self/clear_refs``). Outcomes: ``ok``, ``error``
(the reader's own error class: DataError / UploadError), ``uncaught`` (any other exception, or the
worker crashed), ``hang``, ``memory`` (MemoryError, or a peak above :data:`BLOWUP_MB`), ``escaped`` (a
file written outside the uploads folder). ``net`` counts the errors that came from a reader's last
catch-all (``error.unexpected``): still clear messages, but not a check of their own.
"""
from __future__ import annotations

import functools
import gzip
import io
import json
import os
import queue
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
SHARED = ROOT.parent / "shared" / "data"
HANG_SECONDS = 40.0
MEMORY_LIMIT_BYTES = int(1.5 * 1024 ** 3)
BLOWUP_MB = 1024
BANDS = ("u", "g", "r", "i", "z")
OUTCOMES = ("ok", "error", "uncaught", "hang", "memory", "escaped")

READERS = ("spectra_fits", "spectra_csv", "apogee", "gandalf_folder", "gandalf_zip", "npz_spectra",
           "payne_upload", "cutout", "band_files", "images", "nebula_catalogue", "sdss")


# ============================================================================ building blocks
def fits_bytes(hdus) -> bytes:
    from astropy.io import fits

    buffer = io.BytesIO()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits.HDUList(list(hdus)).writeto(buffer, output_verify="silentfix")
    return buffer.getvalue()


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=True)
    return buffer.getvalue()


def npy_header(shape, descr="<f8", fortran=False) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def zip_bytes(members, method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name) if isinstance(name, str) else name, data)
    return buffer.getvalue()


def npz_bytes(arrays: dict, method=zipfile.ZIP_DEFLATED) -> bytes:
    return zip_bytes([(f"{k}.npy", npy_bytes(v)) for k, v in arrays.items()], method)


def patch_zip(data: bytes, flags: int = 0, method: int | None = None) -> bytes:
    """Set flag bits / the compression method in every local and central header of a zip."""
    out = bytearray(data)
    for signature, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        start = 0
        while (at := out.find(signature, start)) >= 0:
            old = struct.unpack("<H", out[at + flag_at:at + flag_at + 2])[0]
            out[at + flag_at:at + flag_at + 2] = struct.pack("<H", old | flags)
            if method is not None:
                out[at + method_at:at + method_at + 2] = struct.pack("<H", method)
            start = at + 4
    return bytes(out)


@functools.lru_cache(maxsize=8)
def _deflated_zeros(prefix: bytes, zeros: int) -> tuple[bytes, int]:
    """Raw deflate of ``prefix`` + ``zeros`` zero bytes, and its CRC (cached: bombs are reused)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts, crc, block = [compressor.compress(prefix)], zlib.crc32(prefix), bytes(1 << 20)
    left = zeros
    while left > 0:
        piece = block if left >= len(block) else bytes(left)
        parts.append(compressor.compress(piece))
        crc = zlib.crc32(piece, crc)
        left -= len(piece)
    parts.append(compressor.flush())
    return b"".join(parts), crc


def raw_zip(entries) -> bytes:
    """A zip from (name, raw deflate data, crc, uncompressed size[, declared size]) entries."""
    out, central = io.BytesIO(), []
    for entry in entries:
        name, data, crc, size = entry[:4]
        declared = entry[4] if len(entry) > 4 else size
        encoded = name.encode("utf-8")
        offset = out.tell()
        out.write(struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0x800, 8, 0, 0, crc, len(data), declared,
                              len(encoded), 0) + encoded + data)
        central.append(struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0x800, 8, 0, 0, crc, len(data), declared,
                                   len(encoded), 0, 0, 0, 0, 0, offset) + encoded)
    start = out.tell()
    for record in central:
        out.write(record)
    out.write(struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(central), len(central), out.tell() - start, start, 0))
    return out.getvalue()


def zip_bomb(name: str, prefix: bytes = b"", zeros: int = 1 << 29, lie: bool = False) -> bytes:
    data, crc = _deflated_zeros(prefix, zeros)
    size = len(prefix) + zeros
    return raw_zip([(name, data, crc, size, 1000 if lie else size)])


@functools.lru_cache(maxsize=4)
def gzip_bomb(members: int = 3000) -> bytes:
    """Many gzip members of 1 MiB of zeros each: a few MB that unpack to ``members`` MiB."""
    return gzip.compress(bytes(1 << 20), 9) * members


@functools.lru_cache(maxsize=4)
def fits_gzip_bomb() -> bytes:
    """A .fits.gz whose header declares a 4 GB image and whose data are 2.5 GB of zeros: one gzip member for
    the header and 2,500 members of 1 MiB of zeros (~2.5 MB in all)."""
    header = _fits_header([("SIMPLE", "T"), ("BITPIX", "-32"), ("NAXIS", "2"), ("NAXIS1", "32768"),
                           ("NAXIS2", "32768")])
    return gzip.compress(header) + gzip.compress(bytes(1 << 20), 9) * 2500


@functools.lru_cache(maxsize=2)
def many_hdus(count: int = 1100) -> bytes:
    """A FITS file of ``count`` empty image extensions (headers only)."""
    extension = _fits_header([("XTENSION", "'IMAGE   '"), ("BITPIX", "8"), ("NAXIS", "0"), ("PCOUNT", "0"),
                              ("GCOUNT", "1")])
    return _fits_header([("SIMPLE", "T"), ("BITPIX", "8"), ("NAXIS", "0"), ("EXTEND", "T")]) + extension * count


def _fits_header(cards) -> bytes:
    text = "".join(f"{key:<8}= {value:>20}".ljust(80) for key, value in cards) + "END".ljust(80)
    return text.ljust(-(-len(text) // 2880) * 2880).encode("ascii")


def set_card(data: bytes, key: str, value: str, hdu: int = 0) -> bytes:
    """Replace (or insert before END) the card ``key`` of the ``hdu``-th header of FITS bytes."""
    data = bytearray(data)
    starts = [0]
    position = 0
    for _ in range(hdu):  # find the header of the hdu-th HDU by scanning for XTENSION cards at block starts
        at = position + 2880
        while at < len(data) and data[at:at + 8] != b"XTENSION":
            at += 2880
        if at >= len(data):
            break
        starts.append(at)
        position = at
    start = starts[-1]
    card = f"{key:<8}= {value:>20}".ljust(80)[:80].encode("ascii", errors="replace")
    at = start
    while at + 80 <= len(data):
        keyword = bytes(data[at:at + 8]).decode("ascii", errors="replace").strip()
        if keyword == key:
            data[at:at + 80] = card
            return bytes(data)
        if keyword == "END":
            data[at:at + 80] = card
            if at + 160 <= len(data) and not bytes(data[at + 80:at + 160]).strip():
                data[at + 80:at + 160] = "END".ljust(80).encode()
            return bytes(data)
        at += 80
    return bytes(data)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


# ============================================================================ seeds (real files)
def _toy_spectra_arrays(rng, n=6, n_pix=120):
    wavelength = np.linspace(8460.0, 8700.0, n_pix)
    flux = 1 - 0.3 * np.exp(-0.5 * ((wavelength - rng.uniform(8500, 8650, (n, 1))) / 2.0) ** 2)
    return wavelength, flux, np.full_like(flux, 0.01)


@functools.lru_cache(maxsize=1)
def _generated_seeds() -> dict:
    from astropy.io import fits
    from astropy.table import Table

    from astrocore.data.readers import write_table
    from astrocore.data.readers.sdss import write_spec_lite
    from astrocore.data.dataset import Dataset

    rng = np.random.default_rng(0)
    wavelength, flux, errors = _toy_spectra_arrays(rng)
    labels = Table({"id": np.arange(6), "teff": rng.uniform(4000, 6000, 6), "logg": rng.uniform(1, 5, 6)})
    dataset = Dataset(flux, wavelength, labels, errors, {"generator": "fuzz-seed"})
    seeds = {}
    with tempfile.TemporaryDirectory() as folder:
        write_table(dataset, Path(folder) / "table.fits")
        write_table(dataset, Path(folder) / "table.csv")
        seeds["table.fits"] = (Path(folder) / "table.fits").read_bytes()
        seeds["table.csv"] = (Path(folder) / "table.csv").read_bytes()
        dataset.save(Path(folder) / "dataset.fits")
        seeds["dataset.fits"] = (Path(folder) / "dataset.fits").read_bytes()
        grid = 10 ** (3.58 + 1e-4 * np.arange(4000))
        write_spec_lite(Path(folder) / "spec.fits", grid, 1 + 0.1 * np.sin(grid / 50), np.ones(4000))
        seeds["spec.fits"] = (Path(folder) / "spec.fits").read_bytes()
    # an apStar-like file: 2 combined rows + 2 visits on the full 8575-pixel log grid
    n_pix = 8575
    apstar = rng.normal(1000, 10, (4, n_pix)).astype(np.float32)
    primary = fits.PrimaryHDU()
    primary.header.update({"APOGEE_ID": "2M00000000+0000000", "NVISITS": 2, "TEFF": 4800.0, "LOGG": 2.5})
    hdu1 = fits.ImageHDU(apstar)
    hdu1.header.update({"CRVAL1": 4.179, "CDELT1": 6e-6, "CRPIX1": 1})
    seeds["apStar.fits"] = fits_bytes([primary, hdu1, fits.ImageHDU(np.full_like(apstar, 5.0))])
    aspcap = fits.ImageHDU(np.ones(n_pix, np.float32))
    aspcap.header.update({"CRVAL1": 4.179, "CDELT1": 6e-6})
    seeds["aspcapStar.fits"] = fits_bytes([fits.PrimaryHDU(), aspcap, fits.ImageHDU(np.full(n_pix, 0.01, np.float32))])
    image = fits.PrimaryHDU(flux)
    image.header.update({"CRVAL1": 8460.0, "CDELT1": 240 / 119, "CRPIX1": 1})
    seeds["image.fits"] = fits_bytes([image])
    seeds["long.csv"] = ("wavelength,flux,error\n" + "".join(
        f"{w},{f},0.01\n" for w, f in zip(wavelength, flux[0]))).encode()
    seeds["spectra.npz"] = npz_bytes({"spectra": flux, "spec_errs": errors, "wavelength": wavelength,
                                      "snrs": np.full(6, 50.0)})
    seeds["gandalf"] = {"X.npy": npy_bytes(flux.astype(np.float32)), "params.npy": npy_bytes(rng.normal(size=(6, 4))),
                        "ids.npy": npy_bytes(np.arange(6)), "axis_labels.npy": npy_bytes(wavelength)}
    seeds["payne.npz"] = npz_bytes({"w_array_0": rng.normal(size=(50, 5, 4)), "w_array_1": rng.normal(size=(50, 5)),
                                    "b_array_0": rng.normal(size=(50, 5)), "b_array_1": rng.normal(size=50),
                                    "x_min": np.array([3500.0, 0.0, -1.0, -0.2]),
                                    "x_max": np.array([7000.0, 5.0, 0.5, 0.6]),
                                    "wavelength": np.linspace(15100, 16900, 50)})
    cube = rng.normal(0, 1, (5, 32, 32)).astype(np.float32)
    hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(cube[k], name=b) for k, b in enumerate(BANDS)]
    seeds["cutout.fits"] = fits_bytes(hdus)
    seeds["band"] = {b: fits_bytes([fits.PrimaryHDU(cube[k])]) for k, b in enumerate(BANDS)}
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((rng.uniform(0, 255, (32, 32, 3))).astype(np.uint8)).save(buffer, format="PNG")
    seeds["cutout.png"] = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray((rng.uniform(0, 255, (32, 32, 3))).astype(np.uint8)).save(buffer, format="JPEG")
    seeds["cutout.jpg"] = buffer.getvalue()
    lines = ["HB4861_FLUX", "HB4861_FLUX_ERR", "OIII5006_FLUX", "OIII5006_FLUX_ERR", "HA6562_FLUX", "HA6562_FLUX_ERR",
             "NII6583_FLUX", "NII6583_FLUX_ERR", "SII6716_FLUX", "SII6716_FLUX_ERR", "SII6730_FLUX",
             "SII6730_FLUX_ERR", "OI6300_FLUX", "OI6300_FLUX_ERR"]
    catalogue = Table({name: rng.uniform(10, 1000, 20) for name in lines})
    catalogue["region_ID"] = np.arange(20)
    seeds["catalogue.fits"] = fits_bytes([fits.PrimaryHDU(), fits.BinTableHDU(catalogue)])
    return seeds


def seed_files(reader: str) -> list[tuple[str, object]]:
    """(name, bytes or {name: bytes}) real and generated examples of what ``reader`` reads."""
    generated = _generated_seeds()
    assets = lambda *names: [(n, _read(ASSETS / n)) for n in names if _read(ASSETS / n)]  # noqa: E731
    shared = lambda sub, *names: [(n, _read(SHARED / sub / n)) for n in names if _read(SHARED / sub / n)]  # noqa: E731
    if reader == "spectra_fits":
        return (assets("example_apogee_spectra.fits") + [(k, generated[k]) for k in
                ("table.fits", "dataset.fits", "image.fits", "apStar.fits")]
                + shared("galsim", "AEGIS_F606w_catalog.fits"))
    if reader == "apogee":
        return [("apStar-test.fits", generated["apStar.fits"]), ("aspcapStar-test.fits", generated["aspcapStar.fits"])]
    if reader == "spectra_csv":
        return assets("example_rvs_spectra.csv") + [("table.csv", generated["table.csv"]), ("long.csv", generated["long.csv"])]
    if reader in ("gandalf_folder", "gandalf_zip"):
        folders = [("gandalf", generated["gandalf"])]
        example = _read(ASSETS / "example_gandalf_rvs.zip")
        if example:
            with zipfile.ZipFile(io.BytesIO(example)) as archive:
                folders.append(("example_gandalf_rvs", {Path(i.filename).name: archive.read(i)
                                                        for i in archive.infolist() if not i.is_dir()}))
        return folders
    if reader == "npz_spectra":
        return [("spectra.npz", generated["spectra.npz"])] + shared(
            "payne", "apogee_real_2M13012770+5754582.npz", "apogee_real_visits_2M06133561+2433362.npz")
    if reader == "payne_upload":
        return [("payne.npz", generated["payne.npz"])] + shared("payne", "nn_apogee_5label_normalized_dwarfs.npz")
    if reader in ("cutout", "images"):
        extra = assets("example_cutout.fits", "example_cutout.png") if reader == "images" else []
        return (assets("example_bhb_cutout.fits") + extra + [("cutout.fits", generated["cutout.fits"]),
                ("cutout.png", generated["cutout.png"]), ("cutout.jpg", generated["cutout.jpg"])]
                + shared("galsim", "AEGIS_F606w_images_02.fits"))
    if reader == "band_files":
        return [("bands", generated["band"])]
    if reader == "nebula_catalogue":
        return assets("example_nebulae_catalogue.csv") + [("catalogue.fits", generated["catalogue.fits"])]
    if reader == "sdss":
        csv = "wavelength,flux,ivar\n" + "".join(f"{w:.3f},{1 + 0.01 * np.sin(w)},1\n"
                                                  for w in 10 ** (3.6 + 1e-4 * np.arange(3600)))
        return assets("example_bhb_spectrum.fits") + [("spec.fits", generated["spec.fits"]),
                                                      ("spec.csv", csv.encode())]
    raise KeyError(reader)


# ============================================================================ mutations
def truncate(rng, data: bytes) -> bytes:
    return data[:int(rng.integers(0, max(1, len(data))))]


def mutate(rng, data: bytes) -> bytes:
    """Flip, overwrite, insert or delete a few bytes (weighted towards the first 3 kB: headers)."""
    data = bytearray(data)
    for _ in range(int(rng.integers(1, 24))):
        if not data:
            break
        span = min(len(data), 3000) if rng.random() < 0.7 else len(data)
        at = int(rng.integers(0, span))
        action = rng.integers(0, 4)
        if action == 0:
            data[at] ^= 1 << int(rng.integers(0, 8))
        elif action == 1:
            data[at] = int(rng.choice([0, 0x20, 0x30, 0x39, 0x2D, 0x2C, 0x22, 0x0A, 0xFF, 0x7F]))
        elif action == 2:
            data[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 64))).astype(np.uint8))
        else:
            del data[at:at + int(rng.integers(1, 64))]
    return bytes(data)


def random_bytes(rng, magic: bytes = b"") -> bytes:
    return magic + bytes(rng.integers(0, 256, int(rng.integers(0, 5000))).astype(np.uint8))


def _pick(rng, items):
    return items[int(rng.integers(0, len(items)))]


HUGE = ("2147483648", "4294967296", "1099511627776", "999999999999", "-1", "0", "'abc'", "1.5", "1E30")


def fits_hostile(rng, seed: bytes) -> bytes:
    """A FITS file with hostile structure: huge / negative / non-integer axes, bad BITPIX, too many axes,
    lying PCOUNT / TFORM, many HDUs, no END, NaN / inf data, odd shapes and dtypes."""
    from astropy.io import fits

    kind = int(rng.integers(0, 12))
    if kind == 0:
        hdu = int(rng.integers(0, 3))
        return set_card(seed, f"NAXIS{int(rng.integers(1, 3))}", _pick(rng, HUGE), hdu)
    if kind == 1:
        return set_card(seed, "NAXIS", _pick(rng, ("999", "1000", "-1", "3", "2147483648")), int(rng.integers(0, 2)))
    if kind == 2:
        return set_card(seed, "BITPIX", _pick(rng, ("7", "0", "128", "-16", "'x'", "-64", "64")), int(rng.integers(0, 3)))
    if kind == 3:
        return set_card(seed, _pick(rng, ("PCOUNT", "GCOUNT", "TFIELDS")), _pick(rng, HUGE), int(rng.integers(1, 3)))
    if kind == 4:
        return set_card(seed, f"TFORM{int(rng.integers(1, 4))}", _pick(rng, ("'1000000000E'", "'99999999D'", "'ZZZ'",
                                                                            "'PE(1000000000)'", "'0E'")), 1)
    if kind == 5:  # a header with no END card
        return (_fits_header([("SIMPLE", "T"), ("BITPIX", "8"), ("NAXIS", "0")])[:-2880] + b"COMMENT " * 36 * 10)[:30000]
    if kind == 6:  # huge declared image, tiny file
        axes = [_pick(rng, ("2147483648", "100000", "65536", "46341")) for _ in range(int(rng.integers(1, 4)))]
        cards = [("SIMPLE", "T"), ("BITPIX", _pick(rng, ("8", "-64"))), ("NAXIS", str(len(axes)))]
        return _fits_header(cards + [(f"NAXIS{k + 1}", a) for k, a in enumerate(axes)]) + bytes(2880)
    if kind == 7:  # many HDUs
        return many_hdus(int(_pick(rng, (1001, 1100))))
    if kind == 8:  # NaN / inf / odd values
        shape = tuple(int(s) for s in rng.integers(1, 40, int(rng.integers(1, 4))))
        values = rng.normal(size=shape)
        values.flat[rng.integers(0, values.size, max(1, values.size // 3))] = _pick(rng, (np.nan, np.inf, -np.inf, 1e308))
        return fits_bytes([fits.PrimaryHDU(values), fits.ImageHDU(values, name="WAVELENGTH")])
    if kind == 9:  # random shape / dtype image
        dtype = _pick(rng, (np.uint8, np.int16, np.int32, np.int64, np.float32, np.float64))
        shape = tuple(int(s) for s in rng.integers(0, 30, int(rng.integers(1, 6))))
        array = (rng.uniform(-1e4, 1e4, shape)).astype(dtype)
        array = array if array.size else None
        return fits_bytes([fits.PrimaryHDU(array)] + [
            fits.ImageHDU(array, name=_pick(rng, ("U", "G", "WAVELENGTH", "ERRORS", "FLUX")))])
    if kind == 10:  # a table of strings / odd columns
        n = int(rng.integers(0, 30))
        columns = [fits.Column(name=_pick(rng, ("FLUX", "LOGLAM", "WAVELENGTH", "IVAR", "TEFF", "HA6562_FLUX", "ID")),
                               format=_pick(rng, ("10A", "E", "3J", "L", "D", "20E")),
                               array=None) for _ in range(int(rng.integers(1, 5)))]
        names = set()
        unique = [c for c in columns if not (c.name in names or names.add(c.name))]
        return fits_bytes([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(unique, nrows=n)])
    # kind 11: a gzip of a mutated seed
    return gzip.compress(mutate(rng, seed), 1)


def npz_hostile(rng, arrays: dict) -> bytes:
    """A .npz with hostile arrays: object (pickled), huge declared shapes, wrong dtypes / shapes, NaN / inf."""
    arrays = dict(arrays)
    key = _pick(rng, sorted(arrays))
    kind = int(rng.integers(0, 7))
    if kind == 0:
        arrays[key] = np.array([{"a": 1}, None], dtype=object)
    elif kind == 1:  # huge shape in the header, little data
        members = [(f"{k}.npy", npy_bytes(v)) for k, v in arrays.items() if k != key]
        shape = _pick(rng, ((10 ** 10,), (2 ** 31, 2 ** 31), (7214, 10 ** 7), (-1,), (3, 0, 10 ** 12)))
        try:
            header = npy_header(shape, _pick(rng, ("<f8", "<f4", "|u1", "<U100")))
        except ValueError:
            header = npy_header((10 ** 10,))
        members.append((f"{key}.npy", header + bytes(int(rng.integers(0, 4096)))))
        return zip_bytes(members)
    elif kind == 2:
        arrays[key] = _pick(rng, (np.array(["a", "b"]), np.zeros((2, 3), complex), np.zeros(3, bool),
                                  np.zeros((2, 2), dtype=[("a", "<f4"), ("b", "<i4")]), np.array(5.0),
                                  np.zeros((0, 7)), np.zeros((2, 3, 4)), np.zeros(10 ** 5, np.uint8)))
    elif kind == 3:
        values = np.array(arrays[key], dtype=float, copy=True) if np.asarray(arrays[key]).dtype.kind in "fiu" else np.zeros(5)
        if values.size:
            values.flat[rng.integers(0, values.size, max(1, values.size // 4))] = _pick(rng, (np.nan, np.inf, -np.inf))
        arrays[key] = values
    elif kind == 4:
        del arrays[key]
    elif kind == 5:
        arrays[key] = np.asarray(arrays[key]).T if np.ndim(arrays[key]) > 1 else np.asarray(arrays[key])[:-1]
    else:
        arrays[_pick(rng, ("spectra", "spectrum", "wavelength", "w_array_0", "x_min", "flux"))] = rng.normal(
            size=tuple(int(s) for s in rng.integers(0, 50, int(rng.integers(0, 4)))))
    return npz_bytes(arrays, _pick(rng, (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)))


def zip_attack(rng, members: list[tuple[str, bytes]], inner: str = "") -> bytes:
    """A zip with a hostile twist: '../' or absolute names, 300-character names, encrypted or unsupported
    entries, corrupt streams, bombs (declared sizes honest or lying), many entries, duplicates, links."""
    kind = int(rng.integers(0, 12))
    if kind == 0:
        name = _pick(rng, ("../../evil.npy", "/tmp/evil.npy", "a/../../evil.npy", "..\\..\\evil.npy", "C:/evil.npy",
                           "./../evil.npy"))
        return zip_bytes(members + [(name, b"owned")])
    if kind == 1:
        return zip_bytes([(inner + "x" * 300 + ".npy", b"\x93NUMPY")] + members)
    if kind == 2:
        return patch_zip(zip_bytes(members), flags=0x1)
    if kind == 3:
        return patch_zip(zip_bytes(members), method=_pick(rng, (9, 14, 97, 99, 1, 6)))
    if kind == 4:  # corrupt a compressed stream
        data = bytearray(zip_bytes(members))
        for _ in range(int(rng.integers(1, 8))):
            at = int(rng.integers(30, max(31, len(data) // 2)))
            data[at] ^= 0xFF
        return bytes(data)
    if kind == 5:
        prefix = npy_header((1 << 26,), "<f8")
        return zip_bomb(inner + _pick(rng, ("X.npy", "wavelength.npy", "spectra.npy", "w_array_0.npy")), prefix,
                        lie=bool(rng.random() < 0.5))
    if kind == 6:
        return zip_bytes([(f"{inner}f{k}.npy", b"") for k in range(int(rng.integers(10_001, 12_000)))], zipfile.ZIP_STORED)
    if kind == 7:
        return zip_bytes(members + members[:1])
    if kind == 8:  # a symbolic link entry
        info = zipfile.ZipInfo(inner + "link.npy")
        info.external_attr = (0o120777 << 16)
        return zip_bytes(members + [(info, b"/etc/passwd")])
    if kind == 9:
        return truncate(rng, zip_bytes(members))
    if kind == 10:  # nested zip / NUL in a name
        return zip_bytes(members + [(_pick(rng, ("inner.zip", "a\x00b.npy")), zip_bytes(members))])
    return mutate(rng, zip_bytes(members))


def csv_hostile(rng, seed: bytes) -> bytes:
    """CSV text with unquoted commas, ragged rows, huge column counts, long lines, NaN / inf, junk."""
    lines = seed.decode("utf-8", errors="replace").splitlines()
    header, rows = (lines[0], lines[1:]) if lines else ("a,b", ["1,2"])
    kind = int(rng.integers(0, 12))
    if kind == 0:  # unquoted commas in a text field
        rows = [r + ",M31, the Andromeda galaxy" if i % 3 == 0 else r for i, r in enumerate(rows)]
    elif kind == 1:  # ragged rows
        rows = [",".join(r.split(",")[: int(rng.integers(1, 40))]) for r in rows]
    elif kind == 2:  # a header of 200,000 columns
        header = ",".join(f"flux_{8000 + k * 0.01:.2f}" for k in range(200_000))
    elif kind == 3:  # 3 M cells of ones
        return ("a,b,c,d,e,f\n" + "1,1,1,1,1,1\n" * 600_000).encode()
    elif kind == 4:
        values = _pick(rng, ("nan", "inf", "-inf", "1e999", "", "NaN", "null", "--"))
        rows = [",".join(values if rng.random() < 0.3 else v for v in r.split(",")) for r in rows]
    elif kind == 5:  # one very long line without newlines
        return (header + "\n" + "1," * 3_000_000).encode()
    elif kind == 6:
        return b"\xef\xbb\xbf" + seed[:20000] + bytes(rng.integers(0, 256, 2000).astype(np.uint8))
    elif kind == 7:  # an unclosed quote
        rows = ['"' + r for r in rows[:5]] + rows[5:]
    elif kind == 8:  # header only / duplicated header columns
        rows = [] if rng.random() < 0.5 else rows
        header = header + "," + header
    elif kind == 9:  # tabs, semicolons and whitespace separators
        separator = _pick(rng, ("\t", ";", "  ", "|"))
        header, rows = header.replace(",", separator), [r.replace(",", separator) for r in rows]
    elif kind == 10:  # numbers as words, decreasing wavelengths
        header = ",".join(reversed(header.split(",")))
        rows = [",".join(reversed(r.split(","))) for r in rows]
    else:
        return mutate(rng, seed)
    return ("\n".join([header] + rows) + "\n").encode("utf-8", errors="replace")


def png_hostile(rng, seed: bytes) -> bytes:
    """PNGs declaring huge sizes (a decompression bomb header), tiny images, odd modes, truncated data."""
    from PIL import Image

    kind = int(rng.integers(0, 5))
    if kind == 0:  # IHDR patched to a huge size, CRC recomputed
        width, height = _pick(rng, ((100_000, 100_000), (2 ** 31 - 1, 1), (1, 1), (65535, 65535)))
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
        return seed[:8] + chunk + seed[33:]
    buffer = io.BytesIO()
    mode = _pick(rng, ("L", "I;16", "P", "RGBA", "1", "CMYK", "F"))
    size = _pick(rng, ((1, 1), (7, 300), (2000, 10), (64, 64)))
    try:
        Image.new(mode, size).save(buffer, format=_pick(rng, ("PNG", "JPEG", "TIFF", "GIF", "BMP")))
    except (OSError, ValueError, KeyError):
        Image.new("RGB", size).save(buffer, format="PNG")
    data = buffer.getvalue()
    return truncate(rng, data) if kind == 4 else data


# ============================================================================ cases
def _kinds(reader: str) -> list[str]:
    common = ["random", "random_magic", "empty", "truncated", "mutated", "mutated", "mutated", "truncated"]
    if reader in ("spectra_fits", "apogee", "cutout", "images", "sdss", "nebula_catalogue", "band_files"):
        common += ["fits_hostile"] * 8 + ["fits_gzip_bomb", "gzip_bomb", "corrupt_gzip", "truncated_gzip"]
    if reader in ("spectra_csv", "nebula_catalogue", "sdss"):
        common += ["csv_hostile"] * 8
    if reader in ("npz_spectra", "payne_upload"):
        common += ["npz_hostile"] * 8 + ["zip_attack"] * 6
    if reader in ("gandalf_folder",):
        common += ["npz_hostile"] * 8 + ["npy_header"] * 4
    if reader == "gandalf_zip":
        common += ["npz_hostile"] * 4 + ["zip_attack"] * 12
    if reader in ("cutout", "images"):
        common += ["png_hostile"] * 5
    return common


def _magic(name: str) -> bytes:
    lower = name.lower()
    if lower.endswith((".fits", ".fit")):
        return b"SIMPLE  =                    T"
    if lower.endswith((".npz", ".zip")):
        return b"PK\x03\x04"
    if lower.endswith(".png"):
        return b"\x89PNG\r\n\x1a\n"
    if lower.endswith(".gz"):
        return b"\x1f\x8b"
    return b"\x93NUMPY" if lower.endswith(".npy") else b"id,teff,"


def make_case(reader: str, index: int, seed: int = 0) -> dict:
    """Case ``index`` of ``reader``: {"reader", "index", "kind", "name", "files": {relative path: bytes}, "entry"}.
    ``entry`` is the relative path (or list of paths) handed to the reader ("." = the case folder)."""
    kinds = _kinds(reader)
    kind = kinds[index % len(kinds)]
    rng = np.random.default_rng([seed, READERS.index(reader), index])
    seeds = seed_files(reader)
    name, seed_data = seeds[int(rng.integers(0, len(seeds)))]
    folder_like = reader in ("gandalf_folder", "gandalf_zip", "band_files")
    if folder_like:
        members = dict(seed_data)
        key = _pick(rng, sorted(members))
        target = members[key]
    else:
        target = seed_data
    if kind == "random":
        data = random_bytes(rng)
    elif kind == "random_magic":
        data = random_bytes(rng, _magic(key if folder_like else name))
    elif kind == "empty":
        data = b""
    elif kind in ("truncated", "mutated"):
        data = truncate(rng, target) if kind == "truncated" else mutate(rng, target)
    elif kind == "fits_hostile":
        base = target if bytes(target[:6]) == b"SIMPLE" else _generated_seeds()["cutout.fits"]
        data = fits_hostile(rng, base)
    elif kind == "fits_gzip_bomb":
        data, name = fits_gzip_bomb(), ("bomb.fits.gz" if not folder_like else name)
    elif kind == "gzip_bomb":
        data = gzip_bomb()
        name = name if folder_like else Path(name).stem + Path(name).suffix + ".gz"
    elif kind in ("corrupt_gzip", "truncated_gzip"):
        packed = gzip.compress(target)
        data = mutate(rng, packed) if kind == "corrupt_gzip" else truncate(rng, packed)
        name = name if folder_like else name + ".gz"
    elif kind == "csv_hostile":
        data = csv_hostile(rng, target if not bytes(target[:6]) == b"SIMPLE" else b"a,b\n1,2\n")
        name = name if name.endswith(".csv") else "table.csv"
    elif kind == "npz_hostile":
        source = target if reader in ("npz_spectra", "payne_upload") else npz_bytes({
            Path(k).stem: np.load(io.BytesIO(v)) for k, v in members.items() if k.endswith(".npy")})
        with np.load(io.BytesIO(source), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        data = npz_hostile(rng, arrays)
    elif kind == "npy_header":
        data = npy_header(_pick(rng, ((10 ** 10, 7214), (2 ** 40,), (5, 10 ** 9))), _pick(rng, ("<f4", "<f8", "|O")))
    elif kind == "zip_attack":
        if reader == "gandalf_zip":
            data = zip_attack(rng, [(f"g/{k}", v) for k, v in members.items()], inner="g/")
        else:
            with zipfile.ZipFile(io.BytesIO(target)) as archive:
                data = zip_attack(rng, [(i.filename, archive.read(i)) for i in archive.infolist()])
    elif kind == "png_hostile":
        data = png_hostile(rng, _generated_seeds()["cutout.png"])
        name = _pick(rng, ("cutout.png", "cutout.jpg", "cutout.fits"))
    else:
        raise KeyError(kind)
    if rng.random() < 0.05 and not folder_like:  # a 300-character file name now and then
        name = "n" * 300 + Path(name).suffix
    if reader == "gandalf_folder":
        if kind in ("npz_hostile",):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                files = {Path(i.filename).name: archive.read(i) for i in archive.infolist()}
            files = {k if k != "spectra.npy" else "X.npy": v for k, v in files.items()}
            files.setdefault("X.npy", npy_bytes(np.ones((2, 3))))
        else:
            files = {**members, key: data}
        return {"reader": reader, "index": index, "kind": kind, "name": "folder", "files": files, "entry": "."}
    if reader == "gandalf_zip":
        if kind not in ("zip_attack", "npz_hostile"):
            data = zip_bytes([(f"g/{k}", data if k == key else v) for k, v in members.items()])
        elif kind == "npz_hostile":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                inner = [(f"g/{i.filename}", archive.read(i)) for i in archive.infolist()]
            data = zip_bytes([(n.replace("spectra.npy", "X.npy"), v) for n, v in inner] + (
                [] if any(n.endswith("X.npy") for n, _ in inner) else [("g/X.npy", npy_bytes(np.ones((2, 3))))]))
        return {"reader": reader, "index": index, "kind": kind, "name": "upload.zip", "files": {"upload.zip": data},
                "entry": "upload.zip"}
    if reader == "band_files":
        files = {f"{b}.fits": (data if b == key else v) for b, v in members.items()}
        return {"reader": reader, "index": index, "kind": kind, "name": "bands", "files": files,
                "entry": [f"{b}.fits" for b in BANDS]}
    safe = name if len(name) < 200 else "long" + Path(name).suffix
    return {"reader": reader, "index": index, "kind": kind, "name": name, "files": {safe: data}, "entry": safe}


# ============================================================================ the worker
def _peak_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _vm_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _call(reader: str, folder: Path, entry, name: str):
    from astrocore.data.readers import read_apogee, read_spectra
    from astrocore.data.readers.catalogues import read_nebula_catalogue
    from astrocore.data.readers.cutouts import read_cutout, read_cutouts
    from astrocore.data.readers.images import read_image_file
    from astrocore.data.readers.sdss import read_sdss_spectrum

    if reader in ("spectra_fits", "spectra_csv", "npz_spectra", "gandalf_folder"):
        return read_spectra(folder / entry)
    if reader == "apogee":
        return read_apogee(folder / entry)
    if reader in ("gandalf_zip", "payne_upload"):
        from astrocore.app import uploads

        data = (folder / entry).read_bytes()
        if reader == "payne_upload":
            return uploads.store_payne_upload(name, data)
        return uploads.load_uploaded_spectra(name, data)
    data = (folder / entry).read_bytes() if isinstance(entry, str) else None
    if reader == "cutout":
        return read_cutout(data, name, expected_bands=BANDS)
    if reader == "band_files":
        return read_cutouts([(f, (folder / f).read_bytes()) for f in entry], expected_bands=BANDS)
    if reader == "images":
        return read_image_file(data, name)
    if reader == "nebula_catalogue":
        return read_nebula_catalogue(data, name=name)
    if reader == "sdss":
        return read_sdss_spectrum(data, name)
    raise KeyError(reader)


def _escaped(sandbox: Path) -> list[str]:
    """Files written in the sandbox outside cache/uploads/<digest>/ (the only place uploads may go)."""
    uploads = sandbox / "cache" / "uploads"
    bad = []
    for path in sandbox.rglob("*"):
        if path.is_dir():
            continue
        relative = path.relative_to(sandbox)
        if uploads in path.parents:
            inside = path.relative_to(uploads).parts
            if len(inside) >= 2 and len(inside[0]) == 16:
                continue
        if relative.parts[:2] == ("cache", "datasets"):
            continue
        bad.append(str(relative))
    return bad


def worker_main() -> None:
    """Read one JSON case per line on stdin, answer one JSON outcome per line on stdout."""
    import resource
    import warnings

    warnings.simplefilter("ignore")
    sandbox = Path(os.environ["FUZZ_SANDBOX"])
    os.chdir(sandbox / "cwd")
    from astrocore.app import uploads  # noqa: F401 - import everything before the limit is set
    from astrocore.data.dataset import DataError

    _call  # noqa: B018
    UploadError = uploads.UploadError
    limit = _vm_bytes() + MEMORY_LIMIT_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = sys.stdout
    sys.stdout = sys.stderr  # readers that print must not break the protocol
    for line in sys.stdin:
        case = json.loads(line)
        base_rss = _rss_mb()
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            pass
        start = time.perf_counter()
        result = {"outcome": "ok", "type": "", "message": "", "net": False}
        try:
            _call(case["reader"], Path(case["folder"]), case["entry"], case["name"])
        except (DataError, UploadError) as error:
            result.update(outcome="error", type=type(error).__name__, message=str(error)[:300],
                          net=bool(getattr(error, "unexpected", False)))
        except MemoryError as error:
            result.update(outcome="memory", type="MemoryError", message=str(error)[:300])
        except BaseException as error:  # noqa: BLE001 - what the fuzz suite is here to count
            if isinstance(error, KeyboardInterrupt):
                raise
            result.update(outcome="uncaught", type=type(error).__name__, message=str(error)[:300])
        result["seconds"] = time.perf_counter() - start
        result["peak_mb"] = max(0.0, _peak_mb() - base_rss)
        if result["peak_mb"] > BLOWUP_MB and result["outcome"] in ("ok", "error"):
            result["outcome"] = "memory"
        escaped = _escaped(sandbox)
        if escaped:
            result.update(outcome="escaped", message=f"files outside uploads: {escaped[:5]}")
        shutil.rmtree(sandbox / "cache" / "uploads", ignore_errors=True)
        for path in (sandbox / "cwd").iterdir():
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
        out.write(json.dumps(result) + "\n")
        out.flush()


# ============================================================================ the runner
class Worker:
    def __init__(self, root: Path):
        self.root = root
        self.sandbox = Path(tempfile.mkdtemp(dir=root, prefix="sandbox-"))
        (self.sandbox / "cwd").mkdir()
        (self.sandbox / "cache").mkdir()
        env = dict(os.environ, FUZZ_SANDBOX=str(self.sandbox), ASTROCORE_CACHE=str(self.sandbox / "cache"),
                   ASTROCORE_RUNS=str(self.sandbox / "runs"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   ASTROCORE_SHIPPED_RUNS="0", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
                                        start_new_session=True)

    def run(self, case: dict, folder: Path, timeout: float) -> dict:
        message = {k: case[k] for k in ("reader", "entry", "name")}
        message["folder"] = str(folder)
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return self._dead()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                return {"outcome": "hang", "type": "", "message": f"no answer within {timeout:.0f} s", "net": False,
                        "seconds": timeout, "peak_mb": 0.0}
            ready, _, _ = select.select([self.process.stdout], [], [], min(left, 1.0))
            if ready:
                line = self.process.stdout.readline()
                if not line:
                    return self._dead()
                return json.loads(line)

    def _dead(self) -> dict:
        code = self.process.wait()
        outcome = "memory" if code in (-signal.SIGKILL,) else "uncaught"
        return {"outcome": outcome, "type": "crash", "message": f"the worker died (exit code {code})", "net": False,
                "seconds": 0.0, "peak_mb": 0.0}

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.sandbox, ignore_errors=True)


def run_cases(cases, workers: int = 1, timeout: float = HANG_SECONDS, progress=None) -> list[dict]:
    """Run ``cases`` (from :func:`make_case`, or (reader, index, seed) triples built lazily) in ``workers``
    worker processes; returns one record per case (reader, index, kind, outcome, type, message, net,
    seconds, peak_mb)."""
    root = Path(tempfile.mkdtemp(prefix="astrocore-fuzz-"))
    todo: queue.Queue = queue.Queue()
    for position, case in enumerate(cases):
        todo.put((position, case))
    results: dict[int, dict] = {}
    lock = threading.Lock()

    def loop():
        worker = Worker(root)
        try:
            while True:
                try:
                    position, case = todo.get_nowait()
                except queue.Empty:
                    return
                if isinstance(case, tuple):
                    case = make_case(*case)
                folder = Path(tempfile.mkdtemp(dir=root, prefix="case-"))
                for relative, data in case["files"].items():
                    (folder / relative).parent.mkdir(parents=True, exist_ok=True)
                    (folder / relative).write_bytes(data)
                if not worker.alive():
                    worker.close()
                    worker = Worker(root)
                result = worker.run(case, folder, timeout)
                if result["outcome"] in ("hang", "memory") or not worker.alive():
                    worker.close()
                    worker = Worker(root)
                shutil.rmtree(folder, ignore_errors=True)
                record = {k: case[k] for k in ("reader", "index", "kind", "name")}
                record["name"] = record["name"][:60]
                record.update(result)
                with lock:
                    results[position] = record
                    if progress:
                        progress(record)
        finally:
            worker.close()

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shutil.rmtree(root, ignore_errors=True)
    return [results[k] for k in sorted(results)]


def summarise(records: list[dict]) -> dict:
    """Counts per reader: cases, ok, clear errors (and how many came from a catch-all net), uncaught, hangs,
    memory blow-ups, escapes, the slowest case and the largest peak memory."""
    table = {}
    for record in records:
        row = table.setdefault(record["reader"], {"cases": 0, "ok": 0, "clear_errors": 0, "of_which_net": 0,
                                                  "uncaught": 0, "hangs": 0, "memory_blowups": 0, "escaped": 0,
                                                  "max_seconds": 0.0, "max_peak_mb": 0.0})
        row["cases"] += 1
        key = {"ok": "ok", "error": "clear_errors", "uncaught": "uncaught", "hang": "hangs", "memory": "memory_blowups",
               "escaped": "escaped"}[record["outcome"]]
        row[key] += 1
        row["of_which_net"] += int(record["outcome"] == "error" and record.get("net", False))
        row["max_seconds"] = round(max(row["max_seconds"], record.get("seconds", 0.0)), 2)
        row["max_peak_mb"] = round(max(row["max_peak_mb"], record.get("peak_mb", 0.0)), 1)
    return table


if __name__ == "__main__" and "--worker" in sys.argv:
    worker_main()
