"""The embedding explorer's logic: a run's objects and representations, projections, colours,
selections, nearest neighbours, tags and export. Importable without Streamlit; ``pages/explore.py``
only draws what these functions return.

Indices are always row numbers of the run's full dataset: a display subsample (above
:data:`MAX_DISPLAY` points) never changes what a selection or a neighbour search sees."""
from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.path import Path as PolygonPath

from .. import jobs
from ..data.dataset import LABEL_TITLES
from ..embeddings import (ProjectionError, cache_key, check_projectable, project, projection_file, projection_name,
                          projection_params, read_coordinates)
from ..methods import registry

MAX_DISPLAY = 30_000
# A disentangling run's representations (other methods declare theirs in the method registry).
REPRESENTATIONS = {"z": "latent z", "X": "input spectra X", "h": "encoder features h"}
COLUMN_TITLES = {**LABEL_TITLES, "fingerprint": "fingerprint id", "split": "split",
                 "recon_error": "reconstruction MSE"}
CATEGORICAL = ("split", "fingerprint")
SPLIT_NAMES = np.array(["train", "validation", "held out"], dtype=object)
EXPORT_FORMATS = {"csv": ("text/csv", "csv"), "fits": ("application/fits", "fits"),
                  "votable": ("application/x-votable+xml", "vot")}


class ExploreError(ProjectionError):
    """A request the explorer cannot satisfy; the message is meant for the user."""


# ============================================================================ data
@dataclass
class ExploreData:
    """Everything the explorer needs about one run, row-aligned with its dataset.

    ``representations``: name -> title of what the run's method offers (from the method registry);
    ``representation_source(name)`` computes one of them (n, d), on first use, and it is kept (see
    :meth:`values`). ``latent``: the method's default representation (e.g. a disentangler's z).
    ``images`` (optional): multi-band cutouts, an array (n, n_bands, height, width) with one band
    name per plane in ``bands``.
    """

    run_id: str
    ids: np.ndarray            # (n,) str
    table: pd.DataFrame        # id, labels, fingerprint, split, recon_error
    latent: np.ndarray         # (n, d): the default representation
    spectra: np.ndarray | None  # (n, n_pixels) or None when the data cannot be rebuilt (or have none)
    wavelength: np.ndarray | None
    images: np.ndarray | None = None  # (n, n_bands, height, width)
    bands: tuple[str, ...] | None = None
    representations: dict = field(default_factory=lambda: dict(REPRESENTATIONS))
    default_representation: str = "z"
    representation_source: Callable[[str], np.ndarray] | None = field(default=None, repr=False, compare=False)
    _values: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self._values[self.default_representation] = np.asarray(self.latent, np.float32)
        if self.images is None:
            self.bands = None
            return
        images = np.asarray(self.images)
        if images.ndim == 3:  # one band
            images = images[:, None]
        if images.ndim != 4 or len(images) != len(self.ids):
            raise ExploreError(f"Images must be an array (n_objects={len(self.ids)}, n_bands, height, width); "
                               f"got shape {np.shape(self.images)}.")
        bands = tuple(str(b) for b in self.bands) if self.bands is not None else tuple(
            f"band {i + 1}" for i in range(images.shape[1]))
        if len(bands) != images.shape[1]:
            raise ExploreError(f"{images.shape[1]} image bands but {len(bands)} band names ({', '.join(bands)}).")
        self.images, self.bands = images, bands

    def __len__(self) -> int:
        return len(self.ids)

    def available(self) -> list[str]:
        """The representations that can be shown for this run (X needs the spectra)."""
        return [name for name in self.representations
                if name in self._values or (name == "X" and self.spectra is not None)
                or (name != "X" and self.representation_source is not None)]

    def values(self, representation: str) -> np.ndarray:
        """The vectors (n, d) of ``representation``, computed from the run on first use and kept."""
        if representation not in self.representations:
            raise ExploreError(f"representation must be one of {list(self.representations)}; got {representation!r}.")
        if representation not in self._values:
            if representation == "X" and self.spectra is not None:
                self._values["X"] = self.spectra
            elif representation == "X":
                raise ExploreError("The input spectra of this run cannot be rebuilt, so X cannot be shown; use "
                                   f"{self.default_representation}.")
            elif self.representation_source is None:
                raise ExploreError(f"{self.representations[representation].capitalize()} need the run's data, which "
                                   f"cannot be rebuilt; use {self.default_representation}.")
            else:
                values = np.asarray(self.representation_source(representation), np.float32)
                if len(values) != len(self):
                    raise ExploreError(f"{representation} has {len(values)} rows for {len(self)} objects.")
                self._values[representation] = values
        return self._values[representation]


def _label_columns(run, dataset, arrays: dict, n: int) -> dict[str, np.ndarray]:
    columns: dict[str, np.ndarray] = {}
    if dataset is not None:
        for name in dataset.labels.colnames:
            column = np.asarray(dataset.labels[name])
            if column.ndim == 1:  # native byte order (FITS columns are big-endian; pandas/arrow refuse them)
                columns[name] = column.astype(str) if column.dtype.kind in "USO" else column.astype(
                    column.dtype.newbyteorder("="))
    else:
        for key, value in arrays.items():
            if key.startswith("label_") and np.ndim(value) == 1 and len(value) == n:
                columns[key[len("label_"):]] = np.asarray(value)
    return columns


def load_explore_data(run, dataset=None, images=None, bands=None) -> ExploreData:
    """Collect ids, labels, split, reconstruction error, the default representation and the spectra
    (or cutouts) of ``run``, for any registered method.

    ``dataset`` defaults to the run's own data (``run.dataset()``); without it the labels saved with
    the run are used and the spectra views are unavailable. ``images`` / ``bands`` (cutouts, see
    :class:`ExploreData`) default to the dataset's, when it has any.
    """
    spec = registry.get(run.record.method)
    arrays = run.arrays()
    if dataset is None:
        try:
            dataset = run.dataset()
        except Exception:  # data that cannot be rebuilt: the labels saved with the run still work
            dataset = None
    default = spec.default_representation or next(iter(spec.representations))
    # A disentangler stores its latents with the run; other representations are computed.
    stored = arrays.get("latent") if default == "z" else None
    latent = np.asarray(stored if stored is not None else run.representation(default, dataset), np.float32)
    n = len(latent)
    if dataset is not None and len(dataset) != n:
        raise ExploreError(f"The run {run.id} has {n} latent vectors but its data have {len(dataset)} spectra.")
    columns = _label_columns(run, dataset, arrays, n)
    ids = np.asarray(columns.pop("id")).astype(str) if "id" in columns else np.array(
        [f"{run.id}-{i}" for i in range(n)])
    table = pd.DataFrame({"id": ids})
    for name in ("teff", "logg", "feh", "afe"):
        if name in columns:
            table[name] = np.asarray(columns.pop(name), float)
    for name, values in columns.items():
        table[name] = values
    split = arrays.get("split")
    table["split"] = SPLIT_NAMES[np.asarray(split, int)] if split is not None and len(split) == n else "?"
    if "recon_mse" in arrays and len(arrays["recon_mse"]) == n:
        table["recon_error"] = np.asarray(arrays["recon_mse"], float)
    spectra = None if dataset is None or dataset.spectra is None else np.asarray(dataset.spectra, np.float32)
    source = None if dataset is None else partial(run.representation, dataset=dataset)
    if images is None and dataset is not None:
        images, bands = getattr(dataset, "images", None), getattr(dataset, "bands", bands)
    return ExploreData(run_id=run.id, ids=ids, table=table, latent=latent, spectra=spectra,
                       wavelength=None if spectra is None else np.asarray(dataset.wavelength, float),
                       images=images, bands=bands, representations=dict(spec.representations),
                       default_representation=default, representation_source=source)


def representation_values(data: ExploreData, representation: str) -> np.ndarray:
    """The vectors of ``representation`` for every object (see :meth:`ExploreData.values`)."""
    return data.values(representation)


# ============================================================================ projections
def compute_projection(data: ExploreData, representation: str, method: str, params: dict | None = None,
                       seed: int = 0, folder=None) -> np.ndarray:
    """Project inline (used for PCA, and by the background job for UMAP / t-SNE)."""
    params = projection_params(method, params)
    values = representation_values(data, representation)
    check_projectable(len(values), method, params)
    coordinates, _ = project(values, method, key=cache_key(data.run_id, representation), folder=folder, seed=seed,
                             **params)
    return coordinates


def read_projection(run_folder, representation: str, method: str, params: dict | None = None,
                    seed: int = 0) -> np.ndarray | None:
    return read_coordinates(projection_file(run_folder, representation, method, params or {}, seed))


def embed_command(run_folder, representation: str, method: str, params: dict | None = None, seed: int = 0) -> list[str]:
    """The ``astrocore embed`` command a background job runs (also what a user can type)."""
    params = projection_params(method, params)
    command = [sys.executable, "-m", "astrocore", "embed", str(run_folder), "--representation", representation,
               "--method", method, "--seed", str(int(seed))]
    for name, value in sorted(params.items()):
        command += ["--param", f"{name}={value}"]
    return command + ["--out", str(projection_file(run_folder, representation, method, params, seed))]


def start_projection(run_folder, representation: str, method: str, params: dict | None = None,
                     seed: int = 0) -> dict:
    """Compute a UMAP / t-SNE projection in the background (one job per projection)."""
    run_folder = Path(run_folder).resolve()
    name = "embed-" + projection_name(representation, method, params or {}, seed)
    command = embed_command(run_folder, representation, method, params, seed)
    return jobs.launch(run_folder, name, command, run_folder / "jobs" / f"{name}.log",
                       projection_file(run_folder, representation, method, params or {}, seed), kind="embed")


def projection_status(run_folder, representation: str, method: str, params: dict | None = None,
                      seed: int = 0) -> dict:
    return jobs.job_status(run_folder, "embed-" + projection_name(representation, method, params or {}, seed))


def cancel_projection(run_folder, representation: str, method: str, params: dict | None = None, seed: int = 0,
                      wait: bool = False) -> dict:
    """Stop a running UMAP / t-SNE job (its process group is terminated); returns its status."""
    name = "embed-" + projection_name(representation, method, params or {}, seed)
    try:
        return jobs.cancel(run_folder, name, wait=wait)
    except jobs.JobError as error:
        raise ExploreError(f"No projection job to cancel: {error}") from None


def expected_seconds(n: int, method: str) -> float:
    """A rough duration for the progress bar (2 CPU cores)."""
    return {"pca": 1.0, "umap": 8.0 + n / 800.0, "tsne": 3.0 + n / 600.0}[method]


def display_subset(n: int, max_points: int | None = None, seed: int = 0) -> np.ndarray:
    """Sorted row numbers to draw: all of them, or a reproducible random subsample of
    ``max_points`` (default :data:`MAX_DISPLAY`)."""
    max_points = MAX_DISPLAY if max_points is None else int(max_points)
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


# ============================================================================ colours
def colour_options(data: ExploreData) -> list[str]:
    """Columns to colour by: standard labels, other numeric labels, fingerprint, split, recon error."""
    names = [c for c in data.table.columns if c != "id"]
    first = [c for c in ("teff", "logg", "feh", "afe", "fingerprint", "split", "recon_error") if c in names]
    return first + [c for c in names if c not in first]


def colour_kind(values, name: str = "") -> str:
    """"categorical" for ids, splits, strings and integer columns with few values; else "continuous"."""
    values = np.asarray(values)
    if name in CATEGORICAL or values.dtype.kind not in "fiu":
        return "categorical"
    if values.dtype.kind in "iu" and len(np.unique(values)) <= 12:
        return "categorical"
    return "continuous"


def hover_texts(data: ExploreData) -> np.ndarray:
    table = data.table
    parts = [np.char.add("id ", data.ids.astype(str))]
    formats = {"teff": ("Teff ", "{:.0f} K"), "logg": ("log g ", "{:.2f}"), "feh": ("[Fe/H] ", "{:+.2f}"),
               "afe": ("[α/Fe] ", "{:+.2f}")}
    for name, (prefix, fmt) in formats.items():
        if name in table:
            parts.append(np.array([prefix + fmt.format(v) for v in table[name].to_numpy(float)]))
    if "fingerprint" in table:
        parts.append(np.char.add("fingerprint ", table["fingerprint"].astype(str).to_numpy().astype(str)))
    parts.append(table["split"].astype(str).to_numpy().astype(str))
    return np.array([" · ".join(row) for row in zip(*parts)], dtype=object)


# ============================================================================ selections
def _inside_polygon(points: np.ndarray, xs, ys) -> np.ndarray:
    vertices = np.column_stack([np.asarray(xs, float), np.asarray(ys, float)])
    if len(vertices) < 3:
        return np.zeros(len(points), bool)
    return PolygonPath(vertices).contains_points(points)


def selection_indices(event, coordinates=None) -> np.ndarray | None:
    """Full-set row numbers selected by a plotly selection event (``st.plotly_chart(on_select=...)``).

    Lasso and box geometries are applied to *all* ``coordinates`` (so objects left out of a display
    subsample are selected too); clicked points come from their ``customdata``. Returns None when
    the event holds no selection.
    """
    selection = (event or {}).get("selection") if isinstance(event, dict) or hasattr(event, "get") else None
    if not selection:
        return None
    lassos, boxes = selection.get("lasso") or [], selection.get("box") or []
    if coordinates is not None and (lassos or boxes):
        points = np.asarray(coordinates, float)
        mask = np.zeros(len(points), bool)
        for lasso in lassos:
            mask |= _inside_polygon(points, lasso.get("x", []), lasso.get("y", []))
        for box in boxes:
            xs, ys = box.get("x", []), box.get("y", [])
            if len(xs) >= 2 and len(ys) >= 2:
                mask |= ((points[:, 0] >= min(xs)) & (points[:, 0] <= max(xs)) & (points[:, 1] >= min(ys))
                         & (points[:, 1] <= max(ys)))
        return np.flatnonzero(mask)
    picked = []
    for point in selection.get("points") or []:
        custom = point.get("customdata")
        if custom is None:
            continue
        picked.append(int(custom[0] if isinstance(custom, (list, tuple)) else custom))
    if not picked:
        return None
    return np.unique(np.asarray(picked, int))


def rows_digest(rows) -> str:
    """A short identity of a set of row numbers."""
    return hashlib.sha1(np.ascontiguousarray(np.asarray(rows, np.int64)).tobytes()).hexdigest()


def _selection_of(event) -> dict:
    return ((event or {}).get("selection") if isinstance(event, dict) or hasattr(event, "get") else None) or {}


def event_signature(event) -> str:
    """A short identity of a chart selection event (its lasso / box shapes and picked rows), so a
    page can act on each event once without serialising thousands of points every rerun."""
    selection = _selection_of(event)
    if not selection:
        return ""
    rows = [p.get("customdata") for p in selection.get("points") or [] if isinstance(p, dict)]
    text = json.dumps([event_shapes(event), [r[0] if isinstance(r, (list, tuple)) and r else r for r in rows]],
                      default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def event_shapes(event) -> str:
    """The lasso and box shapes of a chart event as text ("" without any)."""
    selection = _selection_of(event)
    lassos, boxes = selection.get("lasso") or [], selection.get("box") or []
    return json.dumps([lassos, boxes], sort_keys=True, default=str) if (lassos or boxes) else ""


def read_event(event, coordinates, previous_shapes: str = "") -> tuple[str, np.ndarray | None, str]:
    """What a new chart event means: ``(kind, rows, shapes)``.

    ``"lasso"``: a new lasso or box (``rows`` inside it, over *all* coordinates); ``"click"``:
    points picked with a click (``rows`` from their customdata) - plotly keeps an earlier lasso in
    the event, so a lasso whose shapes equal ``previous_shapes`` (those of the previous event) is
    not new; ``"none"``: nothing selected. ``shapes`` is to be passed as ``previous_shapes`` next time.
    """
    shapes = event_shapes(event)
    if shapes and shapes != previous_shapes:
        return "lasso", selection_indices(event, coordinates), shapes
    clicked = selection_indices({"selection": {"points": _selection_of(event).get("points") or []}})
    if clicked is not None:
        return "click", clicked, shapes
    return "none", None, shapes


def selection_overlay(rows, chart_rows, same_chart: bool) -> str:
    """How the scatter shows the current selection ``rows``, given what the chart shows by itself.

    ``chart_rows`` are the rows of the chart's own current lasso / box or click (None without one)
    and ``same_chart`` says whether the figure about to be drawn is the one drawn last (same run,
    projection, colours, pick, revision), so that the browser still shows that lasso.

    Returns ``"keep"`` when plotly already highlights exactly ``rows`` (the common case: a new
    lasso): draw the figure exactly as last time, so Streamlit sends a tiny reference instead of the
    scatter again and the browser keeps the chart as it is; ``"highlight"`` when the selection must
    be drawn into the figure (union, intersection, remove, a loaded tag, a redrawn chart);
    ``"clear"`` when nothing is selected but the chart still shows an old lasso (draw it with a new
    revision, which mounts a fresh chart); ``"none"`` otherwise.
    """
    rows = np.unique(np.asarray(rows, int))
    shows = same_chart and chart_rows is not None and len(chart_rows) > 0
    if not len(rows):
        return "clear" if shows else "none"
    if shows and np.array_equal(rows, np.unique(np.asarray(chart_rows, int))):
        return "keep"
    return "highlight"


def apply_chart_event(state, event, coordinates, mode: str = "replace") -> None:
    """Apply a new chart selection event to the page ``state`` (``st.session_state`` or a dict): a
    lasso / box combines into ``explore_rows`` by ``mode``, a click on one point sets
    ``explore_pick``. Each event is applied once (``explore_event`` keeps its signature); after
    ``explore_skip_event`` is set (e.g. another run was chosen) the chart's current event is ignored.
    ``explore_shapes`` and ``explore_chart_rows`` remember what the chart itself shows."""
    signature = event_signature(event)
    if state.pop("explore_skip_event", False):
        state["explore_event"], state["explore_shapes"], state["explore_chart_rows"] = signature, event_shapes(
            event), None
    if signature == state.get("explore_event"):
        return
    kind, new, shapes = read_event(event, coordinates, state.get("explore_shapes", ""))
    state["explore_event"], state["explore_shapes"] = signature, shapes
    state["explore_chart_rows"] = None if new is None else new.tolist()
    if kind == "click" and len(new) == 1:
        state["explore_pick"] = int(new[0])
    elif new is not None:
        state["explore_rows"] = combine(np.asarray(state.get("explore_rows") or [], int), new, mode).tolist()


def scatter_highlight(state, rows, base: str) -> tuple[np.ndarray | None, int]:
    """What to draw for the selection ``rows`` into the scatter: (rows to highlight or None, revision)
    for :func:`embedding_figure`, following :func:`selection_overlay`. ``base`` identifies everything
    else the figure shows (run, projection, colours, pick); ``state`` keeps what was drawn last
    (``explore_drawn``, ``explore_revision``)."""
    revision = int(state.get("explore_revision", 0))
    drawn = state.get("explore_drawn") or {}
    how = selection_overlay(rows, state.get("explore_chart_rows"),
                            drawn.get("base") == base and drawn.get("revision") == revision)
    highlight = drawn.get("highlight") if how == "keep" else (
        np.asarray(rows, int).tolist() if how == "highlight" else None)
    if how == "clear":
        revision += 1
        state["explore_revision"] = revision
    state["explore_drawn"] = {"base": base, "revision": revision, "highlight": highlight}
    return (None if highlight is None else np.asarray(highlight, int)), revision


COMBINE = {"replace": "New", "union": "Union", "intersection": "Intersection", "difference": "Remove"}


def combine(previous, new, mode: str = "replace") -> np.ndarray:
    """Combine successive selections; row numbers, sorted and unique."""
    new = np.unique(np.asarray(new, int))
    if previous is None or mode == "replace":
        return new
    previous = np.unique(np.asarray(previous, int))
    if mode == "union":
        return np.union1d(previous, new)
    if mode == "intersection":
        return np.intersect1d(previous, new)
    if mode == "difference":
        return np.setdiff1d(previous, new)
    raise ExploreError(f"mode must be one of {list(COMBINE)}; got {mode!r}.")


def selection_summary(data: ExploreData, index) -> str:
    index = np.asarray(index, int)
    text = f"{len(index):,} of {len(data):,} objects selected"
    if len(index) and "fingerprint" in data.table:
        text += f" · {data.table['fingerprint'].iloc[index].nunique()} fingerprints"
    return text
