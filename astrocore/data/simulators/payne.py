"""The Payne's neural-network emulators of APOGEE spectra (Ting et al. 2019, ApJ 879, 69).

Two file layouts are understood (both ``.npz``, read with ``allow_pickle=False``):

(a) **per-pixel** networks, the early small emulators (e.g. ``../shared/data/payne``): every pixel
    ``p`` has its own one-hidden-layer network with ``K`` sigmoid units::

        flux[p] = sum_k w_array_1[p,k] * sigmoid(sum_l w_array_0[p,k,l] * s[l] + b_array_0[p,k])
                  + b_array_1[p]

    keys ``w_array_0 (n_pix, K, n_labels)``, ``w_array_1 (n_pix, K)``, ``b_array_0 (n_pix, K)``,
    ``b_array_1 (n_pix,)``, ``x_min``, ``x_max``.

(b) **dense** two-hidden-layer leaky-ReLU network of The Payne's public code
    (``The_Payne/spectral_model.py``; leaky ReLU ``max(0,z) + 0.01*min(0,z)`` on both hidden
    layers, linear output)::

        h1 = leaky_relu(w_array_0 @ s + b_array_0)       # w_array_0 (n_hidden, n_labels)
        h2 = leaky_relu(w_array_1 @ h1 + b_array_1)      # w_array_1 (n_hidden2, n_hidden)
        flux = w_array_2 @ h2 + b_array_2                # w_array_2 (n_pix, n_hidden2)

In both, the labels are scaled as ``s = (labels - x_min) / (x_max - x_min) - 0.5``.
Optional keys ``wavelength`` (Angstrom) and ``label_names`` (a string array) are honoured.

:func:`payne_grid` renders a grid (or uniform random draws) of spectra into a
:class:`~astrocore.data.dataset.Dataset`; :func:`continuum_normalise` is the deterministic
pseudo-continuum normalisation applied to emulators whose output is not normalised (and available to
the readers for raw survey spectra)."""
from __future__ import annotations

import contextlib
import warnings
import zipfile
from pathlib import Path

import numpy as np
from astropy.table import Table
from scipy.special import expit

from ... import __version__
from ..cache import cached_dataset
from ..dataset import DataError, Dataset
from .apogee_grid import (APOGEE_N_PIXELS, CONTINUUM_METHOD, DEFAULT_LABEL_NAMES, EXTRA_LABEL_UNITS, LABEL_ALIASES,
                          _single_threaded_blas, apogee_wavelength, continuum_normalise, file_sha256)


# ---------------------------------------------------------------------------- emulator
def _leaky_relu(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, z, z.dtype.type(0.01) * z)


def _canonical(name: str) -> str:
    return str(name).strip().lower().replace(" ", "")


class PayneEmulator:
    """A Payne neural-network emulator: labels in physical units -> APOGEE spectrum.

    Attributes
    ----------
    label_names : tuple of str
    x_min, x_max : arrays (n_labels,)
        The training range; labels are scaled to -0.5..0.5 across it.
    wavelength : array (n_pixels,) or None
        Angstrom; the APOGEE 7214-pixel grid when ``n_pixels == 7214`` and the file has none.
    normalized : bool
        Whether the output is continuum-normalised.
    kind : "per_pixel" or "dense"
    path, sha256 : the file and its hash (provenance).
    """

    REQUIRED_KEYS = {
        "per_pixel": ("w_array_0", "w_array_1", "b_array_0", "b_array_1", "x_min", "x_max"),
        "dense": ("w_array_0", "w_array_1", "w_array_2", "b_array_0", "b_array_1", "b_array_2",
                  "x_min", "x_max"),
    }

    def __init__(self, weights: dict, x_min, x_max, *, kind: str, label_names=None,
                 wavelength=None, normalized: bool = True, path=None, sha256=None):
        self.kind = kind
        self.weights = weights
        self.x_min = np.asarray(x_min, dtype=np.float64).ravel()
        self.x_max = np.asarray(x_max, dtype=np.float64).ravel()
        self.n_labels = self.x_min.size
        if label_names is None:
            label_names = DEFAULT_LABEL_NAMES.get(
                self.n_labels, tuple(f"label_{i}" for i in range(self.n_labels)))
        self.label_names = tuple(str(n) for n in label_names)
        if len(self.label_names) != self.n_labels:
            raise DataError(
                f"{len(self.label_names)} label names {self.label_names} given for an emulator "
                f"with {self.n_labels} labels."
            )
        self.n_pixels = int(weights["b_array_1" if kind == "per_pixel" else "b_array_2"].size)
        if wavelength is None and self.n_pixels == APOGEE_N_PIXELS:
            wavelength = apogee_wavelength()
        self.wavelength = None if wavelength is None else np.asarray(wavelength, np.float64).ravel()
        if self.wavelength is not None and self.wavelength.size != self.n_pixels:
            raise DataError(
                f"wavelength has {self.wavelength.size} pixels but the emulator outputs "
                f"{self.n_pixels}."
            )
        self.normalized = bool(normalized)
        self.path = None if path is None else Path(path)
        self.sha256 = sha256
        self._scale = (self.x_max - self.x_min).astype(np.float64)
        if kind == "per_pixel":
            self._n_hidden = weights["w_array_0"].shape[1]
        self._cast = {}

    def _parameters(self, dtype) -> tuple:
        """The network's arrays in the layout used by :meth:`render_scaled`, cast to ``dtype``."""
        dtype = np.dtype(dtype)
        if dtype not in self._cast:
            w = self.weights
            if self.kind == "per_pixel":
                n_pix, n_hidden, n_lab = w["w_array_0"].shape
                self._cast[dtype] = (
                    np.ascontiguousarray(w["w_array_0"].reshape(n_pix * n_hidden, n_lab).T,
                                         dtype=dtype),
                    w["b_array_0"].reshape(-1).astype(dtype),
                    w["w_array_1"].reshape(-1).astype(dtype),
                    w["b_array_1"].astype(dtype),
                )
            else:
                self._cast[dtype] = tuple(
                    (np.ascontiguousarray(w[f"w_array_{i}"].T, dtype=dtype),
                     w[f"b_array_{i}"].astype(dtype))
                    for i in range(3)
                )
        return self._cast[dtype]

    def __repr__(self) -> str:
        name = self.path.name if self.path else "in-memory"
        return (f"PayneEmulator({name}: {self.kind}, labels={self.label_names}, "
                f"n_pixels={self.n_pixels}, normalized={self.normalized})")

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path, label_names=None, normalized=None, wavelength=None) -> "PayneEmulator":
        """Read an emulator ``.npz`` (either layout; see the module docstring).

        ``normalized`` defaults to ``False`` when the file name contains "unnormalized" /
        "unnormalised", else ``True``. ``label_names`` defaults to the file's ``label_names`` key,
        else to teff, logg, feh, afe (+ vmacro for 5 labels).
        """
        path = Path(path)
        if not path.exists():
            raise DataError(f"No Payne emulator file at {path}.")
        if path.is_dir():
            raise DataError(f"{path} is a folder; a Payne emulator is a single .npz file.")
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty; expected a Payne emulator .npz file.")
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if magic != b"PK\x03\x04":
            raise DataError(f"{path} is not a .npz (zip) file; a Payne emulator is a .npz of "
                            "arrays w_array_0, w_array_1, ..., x_min, x_max.")
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: np.asarray(archive[key]) for key in archive.files}
        except AttributeError as error:  # np.load returned a plain array (.npy), no context mgr
            raise DataError(f"{path} holds a single array, not a Payne emulator .npz.") from error
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
            raise DataError(
                f"{path} could not be read as a Payne emulator .npz (numeric arrays only, no "
                f"pickled objects): {error}"
            ) from error
        return cls.from_arrays(arrays, label_names=label_names, normalized=normalized,
                               wavelength=wavelength, path=path)

    @classmethod
    def from_arrays(cls, arrays: dict, label_names=None, normalized=None, wavelength=None,
                    path=None) -> "PayneEmulator":
        """Build from a dict of arrays with the keys of either layout (validated)."""
        where = str(path) if path is not None else "emulator arrays"
        kind = "dense" if "w_array_2" in arrays or "b_array_2" in arrays else "per_pixel"
        missing = [key for key in cls.REQUIRED_KEYS[kind] if key not in arrays]
        if missing:
            raise DataError(
                f"{where} is not a Payne emulator: missing keys {missing} (has {sorted(arrays)}). "
                f"A {kind.replace('_', '-')} emulator needs {list(cls.REQUIRED_KEYS[kind])}."
            )
        weights = {}
        for key in cls.REQUIRED_KEYS[kind]:
            value = arrays[key]
            if value.dtype.kind not in "fiu":
                raise DataError(f"{where}: key {key} has dtype {value.dtype}; expected numbers.")
            if not np.all(np.isfinite(value)):
                raise DataError(f"{where}: key {key} contains NaN or infinite values.")
            weights[key] = value
        x_min = weights.pop("x_min").astype(np.float64).ravel()
        x_max = weights.pop("x_max").astype(np.float64).ravel()
        n_lab = x_min.size
        if x_max.size != n_lab:
            raise DataError(f"{where}: x_min has {n_lab} labels but x_max has {x_max.size}.")
        if np.any(x_max <= x_min):
            raise DataError(f"{where}: x_max must exceed x_min for every label.")

        def expect(key, shape):
            actual = weights[key].shape
            if len(actual) != len(shape) or any(s is not None and a != s
                                                for a, s in zip(actual, shape)):
                pretty = "(" + ", ".join("?" if s is None else str(s) for s in shape) + (
                    ",)" if len(shape) == 1 else ")")
                raise DataError(f"{where}: key {key} has shape {actual}; expected {pretty}.")

        if kind == "per_pixel":
            expect("w_array_0", (None, None, n_lab))
            n_pix, n_hidden, _ = weights["w_array_0"].shape
            expect("w_array_1", (n_pix, n_hidden))
            expect("b_array_0", (n_pix, n_hidden))
            expect("b_array_1", (n_pix,))
        else:
            expect("w_array_0", (None, n_lab))
            n_hidden = weights["w_array_0"].shape[0]
            expect("b_array_0", (n_hidden,))
            expect("w_array_1", (None, n_hidden))
            n_hidden2 = weights["w_array_1"].shape[0]
            expect("b_array_1", (n_hidden2,))
            expect("w_array_2", (None, n_hidden2))
            expect("b_array_2", (weights["w_array_2"].shape[0],))

        if label_names is None and "label_names" in arrays:
            names = arrays["label_names"]
            if names.dtype.kind not in "US":
                raise DataError(f"{where}: label_names must be a string array.")
            label_names = tuple(str(n) for n in names.ravel())
        if wavelength is None and "wavelength" in arrays:
            wavelength = arrays["wavelength"]
        if normalized is None:
            stem = Path(str(path)).name.lower() if path is not None else ""
            normalized = not ("unnormalized" in stem or "unnormalised" in stem)
        sha = file_sha256(path) if path is not None and Path(path).is_file() else None
        return cls(weights, x_min, x_max, kind=kind, label_names=label_names,
                   wavelength=wavelength, normalized=normalized, path=path, sha256=sha)

    # ------------------------------------------------------------------ labels
    def _column(self, columns: dict, name: str):
        canon = {_canonical(key): key for key in columns}
        for alias in (name,) + LABEL_ALIASES.get(name, ()):
            if _canonical(alias) in canon:
                return columns[canon[_canonical(alias)]]
        return None

    def label_array(self, labels) -> np.ndarray:
        """Labels as a float64 array (n, n_labels) in physical units, validated.

        ``labels`` may be an array (n, n_labels) / (n_labels,), a dict of columns, an astropy
        Table or a pandas DataFrame (columns by :attr:`label_names`, common aliases accepted).
        """
        if isinstance(labels, Table):
            labels = {name: np.asarray(labels[name]) for name in labels.colnames}
        elif hasattr(labels, "to_dict") and hasattr(labels, "columns"):  # pandas
            labels = {str(name): np.asarray(labels[name]) for name in labels.columns}
        if isinstance(labels, dict):
            columns, missing = [], []
            for name in self.label_names:
                value = self._column(labels, name)
                if value is None:
                    missing.append(name)
                else:
                    columns.append(np.atleast_1d(np.asarray(value, dtype=np.float64)))
            if missing:
                raise DataError(
                    f"labels {missing} are missing; this emulator needs {list(self.label_names)} "
                    f"(got {list(labels)})."
                )
            try:
                array = np.stack(np.broadcast_arrays(*columns), axis=1)
            except ValueError as error:
                raise DataError(f"label columns have different lengths: {error}") from error
        else:
            try:
                array = np.asarray(labels, dtype=np.float64)
            except (TypeError, ValueError) as error:
                raise DataError(f"labels could not be read as numbers: {error}") from error
            if array.ndim == 1:
                array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.n_labels:
            raise DataError(
                f"labels have shape {array.shape}; expected (n, {self.n_labels}) with columns "
                f"{list(self.label_names)}."
            )
        if not np.all(np.isfinite(array)):
            raise DataError(f"{int((~np.isfinite(array)).any(axis=1).sum())} label rows contain "
                            "NaN or infinite values.")
        return array

    def scale(self, labels) -> np.ndarray:
        """Scaled labels ``(labels - x_min)/(x_max - x_min) - 0.5`` (float32)."""
        array = self.label_array(labels)
        return ((array - self.x_min) / self._scale - 0.5).astype(np.float32)

    def in_range(self, labels) -> np.ndarray:
        """Boolean per row: every label inside the training range ``x_min..x_max``."""
        array = self.label_array(labels)
        return np.all((array >= self.x_min) & (array <= self.x_max), axis=1)

    # ------------------------------------------------------------------ forward pass
    def render(self, labels, chunk_size: int | None = None, dtype=np.float32) -> np.ndarray:
        """Spectra (n, n_pixels) for labels in physical units (vectorised, chunked).

        ``dtype`` float32 (default) is fastest; use float64 when fitting labels with
        finite-difference Jacobians (e.g. ``scipy.optimize.least_squares``), whose default step
        (~1e-8) is below float32 resolution.
        """
        return self.render_scaled(self.scale(labels), chunk_size=chunk_size, dtype=dtype)

    def render_normalised(self, labels, chunk_size: int | None = None) -> np.ndarray:
        """Spectra on the continuum-normalised scale of :func:`payne_grid` (float32).

        :meth:`render`, followed by :func:`continuum_normalise` (the documented
        :data:`CONTINUUM_METHOD`) when the emulator's output is not normalised. When ``labels``
        is a dict / Table / DataFrame, labels it lacks (e.g. ``vmacro``) are fixed at the middle
        of the training range, as in :func:`payne_grid`.
        """
        flux = self.render(self._complete(labels), chunk_size=chunk_size)
        if self.normalized:
            return flux
        if self.wavelength is None:
            raise DataError("continuum normalisation needs the emulator's wavelength axis.")
        return continuum_normalise(self.wavelength, flux, **{
            k: v for k, v in CONTINUUM_METHOD.items() if k != "method"})

    def _complete(self, labels):
        """Add missing label columns (mid-range) to dict-like labels; arrays pass through."""
        if isinstance(labels, Table):
            labels = {name: np.asarray(labels[name]) for name in labels.colnames}
        elif hasattr(labels, "to_dict") and hasattr(labels, "columns"):
            labels = {str(name): np.asarray(labels[name]) for name in labels.columns}
        if not isinstance(labels, dict):
            return labels
        present = [np.atleast_1d(v) for v in labels.values()]
        n = max((len(v) for v in present), default=1)
        completed = dict(labels)
        for i, name in enumerate(self.label_names):
            if self._column(labels, name) is None:
                completed[name] = np.full(n, 0.5 * (self.x_min[i] + self.x_max[i]))
        return completed

    def render_scaled(self, scaled, chunk_size: int | None = None, dtype=np.float32) -> np.ndarray:
        """Spectra for already-scaled labels (n, n_labels), each nominally in -0.5..0.5."""
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise DataError(f"dtype must be float32 or float64; got {dtype}.")
        scaled = np.atleast_2d(np.asarray(scaled, dtype=dtype))
        if scaled.ndim != 2 or scaled.shape[1] != self.n_labels:
            raise DataError(
                f"scaled labels have shape {scaled.shape}; expected (n, {self.n_labels})."
            )
        params = self._parameters(dtype)
        n = len(scaled)
        out = np.empty((n, self.n_pixels), dtype=dtype)
        if chunk_size is None:
            width = params[0].shape[1] if self.kind == "per_pixel" else max(
                w.shape[1] for w, _ in params)
            chunk_size = max(1, (1 << 23) // max(width, 1))  # ~32 MB of float32 intermediates
        # per-pixel networks multiply by a (n_labels x n_pix*K) matrix: too thin for BLAS threads
        # (threadpoolctl costs ~1 ms per call, so a handful of spectra skip it)
        thin = self.kind == "per_pixel" and n >= 32
        limit = _single_threaded_blas() if thin else contextlib.nullcontext()
        with limit:
            self._forward(scaled, params, out, chunk_size)
        return out

    def _forward(self, scaled, params, out, chunk_size):
        for start in range(0, len(scaled), chunk_size):
            s = scaled[start:start + chunk_size]
            if self.kind == "per_pixel":
                w0, b0, w1, b1 = params
                hidden = s @ w0
                hidden += b0
                expit(hidden, out=hidden)
                hidden *= w1
                flux = hidden.reshape(len(s), self.n_pixels, self._n_hidden).sum(axis=2)
                flux += b1
            else:
                (w0, b0), (w1, b1), (w2, b2) = params
                h = _leaky_relu(s @ w0 + b0)
                h = _leaky_relu(h @ w1 + b1)
                flux = h @ w2 + b2
            out[start:start + len(s)] = flux


# ---------------------------------------------------------------------------- grid
def _values(name: str, value, low: float, high: float, allow_extrapolation: bool) -> np.ndarray:
    values = np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()
    if values.size == 0:
        raise DataError(f"{name}: no values given.")
    if not np.all(np.isfinite(values)):
        raise DataError(f"{name}: values must be finite numbers.")
    if not allow_extrapolation and (values.min() < low or values.max() > high):
        raise DataError(
            f"{name} values {values.min():g}..{values.max():g} fall outside the emulator's "
            f"training range {low:g}..{high:g}; pass allow_extrapolation=True to render anyway."
        )
    return values


def _label_range(emulator, name):
    index = list(emulator.label_names).index(name)
    return emulator.x_min[index], emulator.x_max[index]


def payne_grid(path, teff=None, logg=None, feh=None, afe=None, n_random=None, n_fingerprints=None,
               seed: int = 0,
               normalize_continuum=None, use_cache: bool = True, label_names=None,
               normalized=None, allow_extrapolation: bool = False, **other_labels) -> Dataset:
    """Render Payne spectra on a regular label grid, or ``n_random`` uniform draws.

    Grid mode (``n_random=None``): each of ``teff``, ``logg``, ``feh``, ``afe`` (and any other
    emulator label passed by name, e.g. ``vmacro=5``) is a scalar or a 1-d array of values; the
    Cartesian product is rendered (``teff`` varies slowest). Labels not given are fixed at the
    middle of the emulator's range.

    Random mode (``n_random=N``): every label is drawn uniformly inside ``x_min..x_max`` with
    ``numpy.random.default_rng(seed)``; a label given as a scalar is held fixed and one given as a
    ``(low, high)`` pair is drawn inside that interval.

    ``normalize_continuum`` defaults to ``not emulator.normalized``: the output of an
    un-normalised emulator (e.g. ``nn_apogee_4label_unnormalized.npz``) is divided by the
    pseudo-continuum of :func:`continuum_normalise`, giving continuum ~ 1.

    Fingerprint mode (``n_fingerprints=N``): N chemistries are drawn as in random mode for every
    label except Teff and logg, and each is rendered on the Cartesian grid of ``teff`` x ``logg``
    (default: Teff 3600-6000 K step 200, logg 0.4-2.6 step 0.2, giants as in the GANDALF paper);
    a ``fingerprint`` column numbers the chemistries.

    Returns a :class:`Dataset` (errors ``None``) with provenance generator "payne", the emulator
    file name and sha256, the parameters and the normalisation method. Cached on disk (keyed by
    the file hash and parameters) unless ``use_cache=False``.
    """
    emulator = PayneEmulator.load(path, label_names=label_names, normalized=normalized)
    if emulator.wavelength is None:
        raise DataError(
            f"{emulator.path}: the emulator has {emulator.n_pixels} pixels and no wavelength key; "
            "only 7214-pixel APOGEE emulators get a default wavelength axis."
        )
    given = {"teff": teff, "logg": logg, "feh": feh, "afe": afe, **other_labels}
    unknown = [name for name, value in given.items()
               if value is not None and name not in emulator.label_names]
    if unknown:
        raise DataError(
            f"{emulator.path.name} has labels {list(emulator.label_names)}; cannot set {unknown}."
        )
    if normalize_continuum is None:
        normalize_continuum = not emulator.normalized

    params: dict = {"mode": "random" if n_random is not None else "grid"}
    fingerprint = None
    if n_fingerprints is not None:
        params["mode"] = "fingerprints"
        rng = np.random.default_rng(seed)
        grid_axes = {
            "teff": _values("teff", np.arange(3600.0, 6000.1, 200.0) if teff is None else teff,
                            *_label_range(emulator, "teff"), allow_extrapolation),
            "logg": _values("logg", np.round(np.arange(0.4, 2.61, 0.2), 2) if logg is None else logg,
                            *_label_range(emulator, "logg"), allow_extrapolation),
        }
        chemistry = {}
        for i, name in enumerate(emulator.label_names):
            if name in grid_axes:
                continue
            value = given.get(name)
            low, high = emulator.x_min[i], emulator.x_max[i]
            if value is not None:
                value = _values(name, value, low, high, allow_extrapolation)
                low, high = (value[0], value[0]) if value.size == 1 else (value[0], value[-1])
            chemistry[name] = rng.uniform(low, high, int(n_fingerprints))
            params[name] = [float(low), float(high)]
        teff_mesh, logg_mesh = np.meshgrid(grid_axes["teff"], grid_axes["logg"], indexing="ij")
        per_star = teff_mesh.size
        fingerprint = np.repeat(np.arange(int(n_fingerprints)), per_star)
        columns = []
        for name in emulator.label_names:
            if name == "teff":
                columns.append(np.tile(teff_mesh.ravel(), int(n_fingerprints)))
            elif name == "logg":
                columns.append(np.tile(logg_mesh.ravel(), int(n_fingerprints)))
            else:
                columns.append(chemistry[name][fingerprint])
        labels = np.stack(columns, axis=1)
        params.update(n_fingerprints=int(n_fingerprints), seed=int(seed),
                      teff=grid_axes["teff"].tolist(), logg=grid_axes["logg"].tolist())
    elif n_random is not None:
        n_random = int(n_random)
        if n_random < 1:
            raise DataError(f"n_random must be a positive integer; got {n_random}.")
        rng = np.random.default_rng(seed)
        columns = []
        for i, name in enumerate(emulator.label_names):
            low, high = emulator.x_min[i], emulator.x_max[i]
            value = given.get(name)
            if value is None:
                columns.append(rng.uniform(low, high, n_random))
                params[name] = [float(low), float(high)]
            else:
                values = _values(name, value, low, high, allow_extrapolation)
                if values.size == 1:
                    columns.append(np.full(n_random, values[0]))
                    params[name] = float(values[0])
                elif values.size == 2 and values[0] <= values[1]:
                    columns.append(rng.uniform(values[0], values[1], n_random))
                    params[name] = [float(values[0]), float(values[1])]
                else:
                    raise DataError(
                        f"in random mode {name} must be a scalar or a (low, high) pair; got "
                        f"{values.size} values."
                    )
        labels = np.stack(columns, axis=1)
        params.update(n_random=n_random, seed=int(seed))
    else:
        axes = []
        for i, name in enumerate(emulator.label_names):
            value = given.get(name)
            if value is None:
                value = 0.5 * (emulator.x_min[i] + emulator.x_max[i])
            values = _values(name, value, emulator.x_min[i], emulator.x_max[i],
                             allow_extrapolation)
            axes.append(values)
            params[name] = [float(v) for v in values]
        mesh = np.meshgrid(*axes, indexing="ij")
        labels = np.stack([m.ravel() for m in mesh], axis=1)
    params.update(normalize_continuum=bool(normalize_continuum),
                  emulator_normalized=emulator.normalized,
                  label_names=list(emulator.label_names))
    if len(labels) > 2_000_000:
        raise DataError(f"the grid has {len(labels)} spectra; more than 2 million is not allowed.")

    def build() -> Dataset:
        flux = emulator.render(labels)
        provenance = {
            "generator": "payne",
            "version": __version__,
            "file": emulator.path.name,
            "path": str(emulator.path.resolve()),
            "sha256": emulator.sha256,
            "emulator_kind": emulator.kind,
            "params": params,
            "normalized": bool(emulator.normalized or normalize_continuum),
            "reference": "Ting et al. 2019, ApJ 879, 69 (The Payne)",
        }
        if normalize_continuum:
            flux = continuum_normalise(emulator.wavelength, flux, **{
                k: v for k, v in CONTINUUM_METHOD.items() if k != "method"})
            provenance["continuum_normalisation"] = dict(CONTINUUM_METHOD)
        if not np.all(np.isfinite(flux)):
            warnings.warn("The emulator produced non-finite flux; those pixels were set to 1.")
            flux = np.where(np.isfinite(flux), flux, 1.0)
        table = Table()
        table["id"] = np.arange(len(labels))
        if fingerprint is not None:
            table["fingerprint"] = fingerprint
        for i, name in enumerate(emulator.label_names):
            table[name] = labels[:, i]
            if name in EXTRA_LABEL_UNITS:
                table[name].unit = EXTRA_LABEL_UNITS[name]
        table["in_range"] = emulator.in_range(labels)
        return Dataset(flux, emulator.wavelength, table, None, provenance)

    key = {"sha256": emulator.sha256, "path": str(emulator.path.resolve()), **params}
    return cached_dataset("payne", __version__, key, build, use_cache=use_cache)
