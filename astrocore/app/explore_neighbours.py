"""The explorer's neighbour searches: nearest objects of a picked or uploaded spectrum in any
representation, and the decoder beside a star of a disentangling run."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from astropy.table import Table

from ..data.dataset import DataError, Dataset
from ..data.readers import check_compatible, resample_to
from .common import MAX_UPLOAD_MB, describe_object
from .explore import ExploreData, ExploreError, representation_values
from .uploads import UploadError, load_uploaded_spectra


# ============================================================================ neighbours
def find_object(data: ExploreData, text: str) -> int:
    """The row of the object whose id is ``text`` (or, failing that, row number ``text``)."""
    text = str(text).strip()
    if not text:
        raise ExploreError("Type an object id.")
    matches = np.flatnonzero(data.ids == text)
    if len(matches):
        return int(matches[0])
    if text.lstrip("#").isdigit() and int(text.lstrip("#")) < len(data):
        return int(text.lstrip("#"))
    raise ExploreError(f"No object with id {text!r} in this run (ids look like {data.ids[0]!r}).")


def _distances(values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Euclidean distance of every row of ``values`` to ``query`` (chunked: memory stays flat for big X)."""
    values = np.asarray(values, np.float32)
    query = np.asarray(query, np.float64).ravel()
    if values.ndim != 2 or query.size != values.shape[1]:
        raise ExploreError(f"The query has {query.size} dimensions but the representation has "
                           f"{values.shape[1] if values.ndim == 2 else '?'}.")
    distances = np.empty(len(values), np.float64)
    for start in range(0, len(values), 8192):
        block = values[start:start + 8192].astype(np.float64) - query
        distances[start:start + 8192] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return distances


def _closest(distances: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    finite = np.flatnonzero(np.isfinite(distances))
    k = int(max(1, min(k, len(finite))))
    rows = finite[np.argpartition(distances[finite], k - 1)[:k]] if k < len(finite) else finite
    rows = rows[np.argsort(distances[rows], kind="stable")]
    return rows, distances[rows]


def nearest_neighbours(values: np.ndarray, index: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` objects closest to row ``index`` (Euclidean distance in ``values``, itself excluded).
    Returns (rows, distances), nearest first."""
    index = int(index)
    if not 0 <= index < len(values):
        raise ExploreError(f"Object {index} is outside this run (0–{len(values) - 1}).")
    distances = _distances(values, np.asarray(values[index]))
    distances[index] = np.inf
    return _closest(distances, k)


def neighbours_of(values: np.ndarray, query, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` objects closest to a vector ``query`` that is not one of the objects (an uploaded
    spectrum's X, z or h). Returns (rows, distances), nearest first."""
    if not len(values):
        raise ExploreError("This run has no objects to compare with.")
    return _closest(_distances(values, query), k)


def neighbours_table(data: ExploreData, rows, distances) -> pd.DataFrame:
    table = data.table.iloc[np.asarray(rows, int)].copy()
    table.insert(1, "distance", np.asarray(distances, float))
    table.insert(0, "row", np.asarray(rows, int))
    return table.reset_index(drop=True)


# ============================================================================ neighbours of an uploaded spectrum
@dataclass
class UploadedSpectrum:
    """One spectrum from an uploaded file, on the run's wavelength grid."""

    name: str                  # the file name (and the row, for a file with several spectra)
    flux: np.ndarray           # (n_pixels,) on the run's grid
    conditional: dict[str, float]  # the file's values of the run's conditional parameters (may be partial)
    missing: tuple[str, ...]   # conditional parameters the file does not give
    resampled: bool            # interpolated onto the run's grid
    n_in_file: int
    index: int
    label_text: str            # the file's labels of this spectrum, for display


def read_upload(name: str, payload: bytes, run, index: int = 0, resample: bool = True,
                max_mb: float | None = None) -> UploadedSpectrum:
    """Read spectrum ``index`` of an uploaded FITS / CSV / npz file (the Spectra page's readers, size
    limit and checks) and bring it onto ``run``'s wavelength grid.

    The grid must match (:func:`astrocore.data.readers.check_compatible`) or, with ``resample``,
    cover the run's range (linear interpolation, :func:`~astrocore.data.readers.resample_to`).
    Conditional parameters (Teff, log g, ...) are taken from the file's labels when present; the
    others are listed in ``missing`` for the user to give. Every problem is an
    :class:`ExploreError` whose message says what was expected and what arrived.
    """
    try:
        dataset, _ = load_uploaded_spectra(name, payload, MAX_UPLOAD_MB if max_mb is None else max_mb)
    except UploadError as error:
        raise ExploreError(str(error)) from None
    n_in_file = len(dataset)
    if not n_in_file:
        raise ExploreError(f"{name} holds no spectra.")
    index = int(index)
    if not 0 <= index < n_in_file:
        raise ExploreError(f"{name} holds {n_in_file} spectra; there is no spectrum number {index + 1}.")
    dataset = dataset.subset([index])
    resampled = False
    try:
        check_compatible(dataset, run.wavelength)
    except DataError as error:
        problem = str(error).replace(f"{dataset.provenance.get('file', '')}: ", "")
        if not resample:
            raise ExploreError(f"{name}: {problem}") from None
        try:
            dataset = resample_to(dataset, run.wavelength)
        except DataError as resample_error:
            reason = str(resample_error).removeprefix("cannot resample: ")
            raise ExploreError(f"{name} cannot be compared with this run: {reason}") from None
        resampled = True
    flux = np.asarray(dataset.spectra[0], np.float32)
    conditional, missing = {}, []
    for label in run.conditional:
        value = float(dataset.labels[label][0]) if label in dataset.labels.colnames else float("nan")
        if np.isfinite(value):
            conditional[label] = value
        else:
            missing.append(label)
    return UploadedSpectrum(name=name, flux=flux, conditional=conditional, missing=tuple(missing),
                            resampled=resampled, n_in_file=n_in_file, index=index,
                            label_text=describe_object(dataset.labels, 0))


def conditional_defaults(run) -> dict[str, float]:
    """The centre of the training range of each conditional parameter (physical units)."""
    return {name: 0.5 * (low + high) for name, (low, high) in run.training_range.items()}


def query_vector(run, spectrum: UploadedSpectrum, representation: str, conditional: dict | None = None) -> np.ndarray:
    """The uploaded spectrum in ``representation``: its flux (X), its latent z or its encoder
    features h, encoded at ``conditional`` (default: the file's values; every parameter is needed)."""
    if representation == "X":
        return spectrum.flux
    values = {**spectrum.conditional, **(conditional or {})}
    missing = [name for name in run.conditional if name not in values]
    if missing:
        raise ExploreError(f"Missing conditional parameter(s) {', '.join(missing)}.")
    labels = Table({name: [float(values[name])] for name in run.conditional})
    one = Dataset(spectrum.flux[None], run.wavelength, labels)
    try:
        return np.asarray(run.representation(representation, one)[0], np.float32)
    except DataError as error:
        raise ExploreError(str(error)) from None


def upload_neighbours(run, data: ExploreData, spectrum: UploadedSpectrum, representation: str, k: int = 5,
                      conditional: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` objects of the run closest to an uploaded spectrum in ``representation``."""
    values = representation_values(data, representation)
    return neighbours_of(values, query_vector(run, spectrum, representation, conditional), k)


# ============================================================================ the decoder beside a star
def decoder_values(run, data: ExploreData, index: int) -> dict[str, float]:
    return {name: float(data.table[name].iloc[int(index)]) for name in run.conditional}


def generated_at(run, data: ExploreData, index: int, values: dict[str, float]) -> tuple[np.ndarray, np.ndarray, bool]:
    """(original, generated at ``values``, extrapolation flag) for one object of a disentangling run."""
    if data.spectra is None:
        raise ExploreError("The spectra of this run cannot be rebuilt, so nothing can be decoded.")
    index = int(index)
    own = decoder_values(run, data, index)
    order = list(run.conditional)
    spectra, flags = run.generate(data.spectra[index][None], [[own[n] for n in order]],
                                  [[float(values[n]) for n in order]])
    return data.spectra[index], spectra[0], bool(flags[0])



# ============================================================================ is an upload like the training data?
@dataclass
class Novelty:
    """How an uploaded spectrum compares with a run's own objects.

    ``recon_rms``: RMS of the upload's reconstruction (flux units) against the run's held-out
    ``recon_rms_p95`` (95th percentile); ``distance``: to its nearest object in the representation,
    against ``distance_p95`` (95th percentile of the objects' distances to their own nearest other
    object). ``unusual`` when either lies beyond 3x its percentile."""

    recon_rms: float | None
    recon_rms_p95: float | None
    distance: float
    distance_p95: float

    @property
    def unusual(self) -> bool:
        far = self.distance > 3 * self.distance_p95
        badly_rebuilt = self.recon_rms is not None and self.recon_rms_p95 is not None and \
            self.recon_rms > 3 * self.recon_rms_p95
        return bool(far or badly_rebuilt)

    def message(self) -> str:
        parts = []
        if self.recon_rms is not None and self.recon_rms_p95 is not None:
            parts.append(f"the model reconstructs it with RMS {self.recon_rms:.3g} (95 % of the run's held-out "
                         f"spectra: below {self.recon_rms_p95:.3g})")
        parts.append(f"its nearest neighbour lies at distance {self.distance:.3g} (95 % of the run's objects have "
                     f"one within {self.distance_p95:.3g})")
        return "; ".join(parts)


def typical_neighbour_distance(values: np.ndarray, n_queries: int = 64, seed: int = 0) -> float:
    """95th percentile of the distance from a run's objects (a seeded sample of ``n_queries``) to their
    nearest other object in ``values`` (n, d)."""
    rows = np.random.default_rng(seed).choice(len(values), size=min(n_queries, len(values)), replace=False)
    inner = [_closest(_distances(values, values[row]), 2)[1][-1] for row in rows]
    return float(np.percentile(inner, 95))


def novelty(run, distances: np.ndarray, distance_p95: float, flux: np.ndarray | None = None,
            conditional: dict | None = None) -> Novelty:
    """Compare an upload with the run's objects (see :class:`Novelty`): ``distances`` are the upload's
    neighbour distances, ``distance_p95`` the run's :func:`typical_neighbour_distance`; with ``flux``
    and the ``conditional`` parameters a disentangler also reconstructs the upload."""
    recon_rms = recon_p95 = None
    arrays = run.arrays()
    complete = conditional is not None and all(name in conditional for name in getattr(run, "conditional", ()))
    if flux is not None and complete and "recon_mse" in arrays and hasattr(run, "decode"):
        cp = [[float(conditional[name]) for name in run.conditional]]
        rebuilt = run.decode(run.encode(flux[None], cp), cp)[0]
        recon_rms = float(np.sqrt(np.mean((rebuilt - flux) ** 2)))
        errors = np.asarray(arrays["recon_mse"])
        split = np.asarray(arrays.get("split", np.full(len(errors), 2)))
        recon_p95 = float(np.sqrt(np.percentile(errors[split == 2] if np.any(split == 2) else errors, 95)))
    return Novelty(recon_rms, recon_p95, float(np.min(distances)), float(distance_p95))
