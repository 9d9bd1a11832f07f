"""Arrays larger than memory: rows stored as ``.npy`` shards in a folder, read a few rows at a time.

A store is a folder (by convention ``*.shards``)::

    store.json            format, version, the arrays (dtype, shape of one row) and their shards
                          (file, rows); written last, so a store without it is incomplete
    <array>/00000.npy     consecutive rows of one array, plain NumPy files (np.load(mmap_mode="r")
    <array>/00001.npy     opens any of them)
    ...                   (plus whatever small files the writer's caller adds: labels, provenance)

:class:`ShardedArray` reads the rows asked for with positioned reads (``os.pread``: one read per
run of consecutive rows), never mapping or loading a whole file, so a process holds only the
batch it works on. :class:`RowView` is a lazy selection of rows of one. :class:`StoreWriter`
appends rows shard by shard. This module imports no other astrocore module.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

STORE_FORMAT = "astrocore-npy-shards"
STORE_VERSION = 1
STORE_SUFFIX = ".shards"


def is_store(path) -> bool:
    """True for a folder holding a complete store (its ``store.json``)."""
    path = Path(path)
    return path.is_dir() and (path / "store.json").is_file()


def wants_store(path) -> bool:
    """True when ``path`` names a store: a ``.shards`` suffix or an existing store folder."""
    return Path(path).suffix.lower() == STORE_SUFFIX or is_store(path)


def _npy_header(path: Path) -> tuple[int, tuple, np.dtype]:
    """(data offset, shape, dtype) of a ``.npy`` file without reading its data."""
    with open(path, "rb") as stream:
        version = np.lib.format.read_magic(stream)
        reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in reader:
            raise ValueError(f"{path} is a .npy file of version {version}; a store reads versions 1 and 2.")
        shape, fortran, dtype = reader[version](stream)
        if fortran:
            raise ValueError(f"{path} is Fortran-ordered; a store needs C-ordered rows.")
        if dtype.hasobject:
            raise ValueError(f"{path} holds Python objects; a store holds numbers only.")
        return stream.tell(), tuple(shape), dtype


class ShardedArray:
    """A read-only array of rows stored in ``.npy`` shards; indexing reads only those rows.

    ``array[i]``, ``array[start:stop]``, ``array[index_array]`` and ``array[bool_mask]`` return NumPy
    arrays; :meth:`rows` returns a lazy :class:`RowView`. ``np.asarray(array)`` reads it all.
    """

    def __init__(self, files: list[Path]):
        if not files:
            raise ValueError("A sharded array needs at least one shard.")
        headers = [_npy_header(Path(file)) for file in files]
        self.files = [Path(file) for file in files]
        self.offsets = [offset for offset, _, _ in headers]
        shapes = [shape for _, shape, _ in headers]
        self.dtype = headers[0][2]
        self.row_shape = shapes[0][1:]
        if any(shape[1:] != self.row_shape or dtype != self.dtype for _, shape, dtype in headers):
            raise ValueError(f"The shards of {self.files[0].parent} differ in row shape or dtype.")
        self.starts = np.concatenate([[0], np.cumsum([shape[0] for shape in shapes])]).astype(np.int64)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._handles: dict[int, int] = {}
        self._pid = os.getpid()

    @property
    def shape(self) -> tuple:
        return (int(self.starts[-1]), *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __repr__(self) -> str:
        return f"ShardedArray(shape={self.shape}, dtype={self.dtype}, shards={len(self.files)})"

    def __array__(self, dtype=None, copy=None):
        values = self[0:len(self)]
        return values if dtype is None else values.astype(dtype, copy=False)

    def __getstate__(self):
        return {"files": self.files}

    def __setstate__(self, state):
        self.__init__(state["files"])

    def _handle(self, shard: int) -> int:
        if self._pid != os.getpid():  # forked: descriptors are not shared safely
            self._handles, self._pid = {}, os.getpid()
        if shard not in self._handles:
            self._handles[shard] = os.open(self.files[shard], os.O_RDONLY)
        return self._handles[shard]

    def _read_run(self, first: int, count: int, out: np.ndarray) -> None:
        """Rows ``first`` .. ``first + count - 1`` (one shard) into the byte buffer ``out``."""
        shard = int(np.searchsorted(self.starts, first, side="right") - 1)
        position = self.offsets[shard] + (first - int(self.starts[shard])) * self.row_bytes
        view, wanted, done = memoryview(out).cast("B"), count * self.row_bytes, 0
        while done < wanted:
            read = os.preadv(self._handle(shard), [view[done:wanted]], position + done)
            if read <= 0:
                raise OSError(f"{self.files[shard]} is shorter than its header says.")
            done += read

    def take(self, index) -> np.ndarray:
        """Rows ``index`` (integers, any order, repeats allowed) as a new array."""
        index = np.asarray(index, dtype=np.int64).ravel()
        n = len(self)
        if index.size and (index.min() < -n or index.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        index = np.where(index < 0, index + n, index)
        unique, inverse = np.unique(index, return_inverse=True)
        out = np.empty((len(unique), *self.row_shape), dtype=self.dtype)
        if len(unique):
            # Runs of consecutive rows within one shard: one read each.
            shard_of = np.searchsorted(self.starts, unique, side="right") - 1
            breaks = np.flatnonzero((np.diff(unique) != 1) | (np.diff(shard_of) != 0)) + 1
            for begin, end in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [len(unique)]])):
                self._read_run(int(unique[begin]), int(end - begin), out[begin:end])
        return out if np.array_equal(unique, index) else out[inverse.ravel()]

    def __getitem__(self, key):
        if isinstance(key, tuple):
            rows, rest = key[0], key[1:]
            return self[rows][(slice(None), *rest)] if not np.isscalar(rows) else self[rows][rest]
        if isinstance(key, (int, np.integer)):
            return self.take([key])[0]
        if isinstance(key, slice):
            return self.take(np.arange(*key.indices(len(self))))
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (len(self),):
                raise IndexError(f"boolean index of shape {key.shape} for {len(self)} rows")
            key = np.flatnonzero(key)
        return self.take(key)

    def rows(self, index) -> "RowView":
        return RowView(self, index)

    def chunks(self, rows_per_chunk: int = 4096):
        """Yield ``(start, rows)`` over the whole array, ``rows_per_chunk`` rows at a time."""
        for start in range(0, len(self), rows_per_chunk):
            yield start, self[start:start + rows_per_chunk]

    def close(self) -> None:
        for handle in self._handles.values():
            os.close(handle)
        self._handles = {}

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


class RowView:
    """Rows ``index`` of a :class:`ShardedArray` (or of another view), read only when indexed."""

    def __init__(self, base, index):
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if isinstance(base, RowView):
            base, index = base.base, base.index[index]
        self.base, self.index = base, index.astype(np.int64)
        self.dtype, self.row_shape = base.dtype, base.row_shape

    @property
    def shape(self) -> tuple:
        return (len(self.index), *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    def __len__(self) -> int:
        return len(self.index)

    def __array__(self, dtype=None, copy=None):
        values = self.base.take(self.index)
        return values if dtype is None else values.astype(dtype, copy=False)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.base.take([self.index[key]])[0]
        key = np.asarray(key) if not isinstance(key, slice) else key
        return self.base.take(self.index[key])

    def take(self, index) -> np.ndarray:
        return self.base.take(self.index[np.asarray(index)])

    def rows(self, index) -> "RowView":
        return RowView(self, index)

    def chunks(self, rows_per_chunk: int = 4096):
        for start in range(0, len(self), rows_per_chunk):
            yield start, self[start:start + rows_per_chunk]


class MappedRows:
    """``function(rows)`` applied to the rows of an on-disk array as they are read (e.g. scaling)."""

    def __init__(self, base, function):
        self.base, self.function = base, function
        probe = function(base[0:1])
        self.dtype, self.row_shape = probe.dtype, probe.shape[1:]

    @property
    def shape(self) -> tuple:
        return (len(self.base), *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    def __len__(self) -> int:
        return len(self.base)

    def take(self, index) -> np.ndarray:
        return self.function(self.base.take(index))

    def __getitem__(self, key):
        return self.function(self.base[key])

    def __array__(self, dtype=None, copy=None):
        values = self.function(np.asarray(self.base))
        return values if dtype is None else values.astype(dtype, copy=False)

    def chunks(self, rows_per_chunk: int = 4096):
        for start, rows in iter_chunks(self.base, rows_per_chunk):
            yield start, self.function(rows)


def is_lazy(array) -> bool:
    """True for the on-disk arrays of this module (not loaded in memory)."""
    return isinstance(array, (ShardedArray, RowView, MappedRows))


def take_rows(array, index):
    """``array[index]``: a lazy :class:`RowView` for an on-disk array, a NumPy array otherwise."""
    return RowView(array, index) if is_lazy(array) else array[index]


def iter_chunks(array, rows_per_chunk: int = 4096):
    """``(start, rows)`` over any array (in memory or on disk), ``rows_per_chunk`` rows at a time."""
    if is_lazy(array):
        yield from array.chunks(rows_per_chunk)
        return
    for start in range(0, len(array), rows_per_chunk):
        yield start, array[start:start + rows_per_chunk]


class StoreWriter:
    """Write arrays shard by shard into a new store folder; :meth:`close` makes it complete.

    Everything goes to a hidden sibling folder first and is renamed to ``path`` at the end, so an
    interrupted write never leaves something that looks like a store.
    """

    def __init__(self, path, rows_per_shard: int = 8192):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.part-{os.getpid()}")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        self.rows_per_shard = int(rows_per_shard)
        self.arrays: dict[str, dict] = {}
        self.pending: dict[str, list[np.ndarray]] = {}

    @property
    def folder(self) -> Path:
        """Where to put extra files (labels, provenance) before :meth:`close`."""
        return self.tmp

    def append(self, **arrays: np.ndarray) -> None:
        """Append rows to each named array (every call must name the same arrays)."""
        if self.arrays and set(arrays) != set(self.arrays):
            raise ValueError(f"append() got arrays {sorted(arrays)}; the store has {sorted(self.arrays)}.")
        for name, values in arrays.items():
            values = np.ascontiguousarray(values)
            entry = self.arrays.setdefault(name, {"dtype": values.dtype.str, "row_shape": list(values.shape[1:]),
                                                  "shards": [], "rows": 0})
            if list(values.shape[1:]) != entry["row_shape"] or values.dtype.str != entry["dtype"]:
                raise ValueError(f"{name}: rows of shape {values.shape[1:]} {values.dtype} after "
                                 f"{entry['row_shape']} {entry['dtype']}.")
            self.pending.setdefault(name, []).append(values)
            if sum(len(part) for part in self.pending[name]) >= self.rows_per_shard:
                self._flush(name, final=False)

    def _flush(self, name: str, final: bool) -> None:
        values = np.concatenate(self.pending[name]) if self.pending.get(name) else None
        self.pending[name] = []
        if values is None:
            return
        entry = self.arrays[name]
        limit = len(values) if final else (len(values) // self.rows_per_shard) * self.rows_per_shard
        for start in range(0, limit, self.rows_per_shard):
            part = values[start:min(start + self.rows_per_shard, limit)]
            file = f"{name}/{len(entry['shards']):05d}.npy"
            (self.tmp / name).mkdir(exist_ok=True)
            np.save(self.tmp / file, part, allow_pickle=False)
            entry["shards"].append({"file": file, "rows": int(len(part))})
            entry["rows"] += int(len(part))
        if limit < len(values):
            self.pending[name] = [values[limit:]]

    def close(self, **extra) -> Path:
        """Write the last shards and ``store.json`` (with ``extra`` keys), and move into place."""
        for name in self.arrays:
            self._flush(name, final=True)
        counts = {entry["rows"] for entry in self.arrays.values()}
        if len(counts) > 1:
            raise ValueError(f"The arrays of a store must have the same rows; got {counts}.")
        meta = {"format": STORE_FORMAT, "version": STORE_VERSION, "rows": counts.pop() if counts else 0,
                "arrays": self.arrays, **extra}
        (self.tmp / "store.json").write_text(json.dumps(meta, indent=1))
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def open_store(path) -> tuple[dict, dict[str, ShardedArray]]:
    """(``store.json`` contents, name -> :class:`ShardedArray`) of a store folder."""
    path = Path(path)
    if not is_store(path):
        raise FileNotFoundError(f"{path} is not a complete array store (no store.json).")
    meta = json.loads((path / "store.json").read_text())
    if meta.get("format") != STORE_FORMAT:
        raise ValueError(f"{path}/store.json is not an astrocore store (format {meta.get('format')!r}).")
    arrays = {}
    for name, entry in meta.get("arrays", {}).items():
        files = [(path / shard["file"]).resolve() for shard in entry["shards"]]
        if any(path.resolve() not in file.parents for file in files):
            raise ValueError(f"{path}/store.json points outside its folder.")
        arrays[name] = ShardedArray(files) if files else np.zeros((0, *entry["row_shape"]), entry["dtype"])
    return meta, arrays
