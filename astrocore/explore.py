"""The embedding explorer's logic: projections of a run's representations, colours, selections,
linked views, nearest neighbours, tags and export. Importable without Streamlit; the page
``pages/explore.py`` only draws what these functions return.

Indices are always row numbers of the run's full dataset: a display subsample (above
:data:`MAX_DISPLAY` points) never changes what a selection or a neighbour search sees.

Representations: the input spectra X, the latent z and, for disentangling runs, the activations
of the encoder's last hidden layer ("encoder features h": 256-d for the MLP encoder, the spectrum's
200 principal components for the ``cp-polynomial`` encoder), computed from the run's model on
demand. Data with images (multi-band cutouts) also get cutout grids of a selection and of neighbours.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.table import Table

from .data.dataset import LABEL_TITLES

MAX_DISPLAY = 30_000
REPRESENTATIONS = {"z": "latent z", "X": "input spectra X", "h": "encoder features h"}
METHODS = {"pca": "PCA (instant)", "umap": "UMAP", "tsne": "t-SNE (openTSNE)"}
DEFAULT_PARAMS = {"pca": {}, "umap": {"n_neighbors": 15, "min_dist": 0.1}, "tsne": {"perplexity": 30.0}}
PARAM_LIMITS = {"n_neighbors": (2, 200, int), "min_dist": (0.0, 1.0, float), "perplexity": (2.0, 500.0, float)}
COLUMN_TITLES = {**LABEL_TITLES, "fingerprint": "fingerprint id", "split": "split",
                 "recon_error": "reconstruction MSE"}
CATEGORICAL = ("split", "fingerprint")
SPLIT_NAMES = np.array(["train", "validation", "held out"], dtype=object)
EXPORT_FORMATS = {"csv": ("text/csv", "csv"), "fits": ("application/fits", "fits"),
                  "votable": ("application/x-votable+xml", "vot")}


class ExploreError(ValueError):
    """A request the explorer cannot satisfy; the message is meant for the user."""


# ============================================================================ data
@dataclass
class ExploreData:
    """Everything the explorer needs about one run, row-aligned with its dataset.

    ``images`` (optional): multi-band cutouts, an array (n, n_bands, height, width) with one band
    name per plane in ``bands``. ``feature_source`` (optional): a function returning the encoder
    features h (n, width); they are computed on first use and kept (see :meth:`features`).
    """

    run_id: str
    ids: np.ndarray            # (n,) str
    table: pd.DataFrame        # id, labels, fingerprint, split, recon_error
    latent: np.ndarray         # (n, d)
    spectra: np.ndarray | None  # (n, n_pixels) or None when the data cannot be rebuilt
    wavelength: np.ndarray | None
    images: np.ndarray | None = None  # (n, n_bands, height, width)
    bands: tuple[str, ...] | None = None
    feature_source: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)
    _features: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
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

    def features(self) -> np.ndarray:
        """The encoder features h (n, width), computed from the run's model on first use."""
        if self._features is None:
            if self.feature_source is None:
                raise ExploreError("Encoder features h exist only for disentangling runs whose spectra can be "
                                   "rebuilt; use z or X.")
            self._features = np.asarray(self.feature_source(), np.float32)
        return self._features


def load_explore_data(run, dataset=None, images=None, bands=None) -> ExploreData:
    """Collect ids, labels, split, reconstruction error, latents and spectra of ``run``.

    ``dataset`` defaults to the run's own data (rebuilt from ``run.record.data``); without it the
    labels saved with the run are used and the spectra views are unavailable. ``images`` /
    ``bands`` (cutouts, see :class:`ExploreData`) default to the dataset's, when it has any.
    """
    arrays = run.arrays()
    latent = np.asarray(arrays["latent"], dtype=np.float32)
    n = len(latent)
    if dataset is None:
        try:
            from .data import dataset_from_source

            dataset = dataset_from_source(run.record.data)
        except Exception:  # data that cannot be rebuilt: the labels saved with the run still work
            dataset = None
    if dataset is not None and len(dataset) != n:
        raise ExploreError(f"The run {run.id} has {n} latent vectors but its data have {len(dataset)} spectra.")
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
    spectra = None if dataset is None else np.asarray(dataset.spectra, np.float32)
    feature_source = None
    if spectra is not None and getattr(run, "method", "") == "disentangle" and all(
            name in table for name in run.conditional):
        conditional = table[list(run.conditional)].to_numpy(np.float32)
        feature_source = partial(encoder_features, run, spectra, conditional)
    if images is None and dataset is not None:
        images, bands = getattr(dataset, "images", None), getattr(dataset, "bands", bands)
    return ExploreData(run_id=run.id, ids=ids, table=table, latent=latent, spectra=spectra,
                       wavelength=None if dataset is None else np.asarray(dataset.wavelength, float),
                       images=images, bands=bands, feature_source=feature_source)


def representation_values(data: ExploreData, representation: str) -> np.ndarray:
    if representation == "z":
        return data.latent
    if representation == "X":
        if data.spectra is None:
            raise ExploreError("The input spectra of this run cannot be rebuilt, so X cannot be shown; use z.")
        return data.spectra
    if representation == "h":
        return data.features()
    raise ExploreError(f"representation must be one of {list(REPRESENTATIONS)}; got {representation!r}.")


def run_representation(run, representation: str) -> np.ndarray:
    """The values of ``representation`` for every object of ``run`` (what ``astrocore embed`` projects)."""
    if representation == "z":
        return np.asarray(run.arrays()["latent"], np.float32)
    return representation_values(load_explore_data(run), representation)


# ============================================================================ encoder features h
def _conditional_rows(run, conditional, n: int) -> np.ndarray:
    """Conditional parameters as a float32 array (n, n_cp): from a dict of values or an array."""
    names = list(run.conditional)
    if isinstance(conditional, dict):
        missing = [name for name in names if name not in conditional]
        if missing:
            raise ExploreError(f"Missing conditional parameter(s) {', '.join(missing)}.")
        conditional = [[float(conditional[name]) for name in names]]
    cp = np.asarray(conditional, np.float32)
    if cp.ndim == 1:
        cp = cp[None]
    if len(cp) == 1 and n > 1:
        cp = np.repeat(cp, n, axis=0)
    if cp.shape != (n, len(names)):
        raise ExploreError(f"Expected conditional parameters of shape ({n}, {len(names)}) for "
                           f"{', '.join(names)}; got {cp.shape}.")
    if not np.all(np.isfinite(cp)):
        raise ExploreError("The conditional parameters contain NaN or infinite values.")
    return cp


def feature_width(run) -> int:
    """Width of the encoder's last hidden layer (the dimension of h): for a ``cp-polynomial``
    encoder, its number of principal components."""
    if run.config.encoder == "cp-polynomial":
        return int(run.config.encoder_components)
    hidden = tuple(run.config.encoder_hidden)
    if not hidden:
        raise ExploreError("This model's encoder has no hidden layer, so there are no encoder features h.")
    return int(hidden[-1])


def encoder_features(run, spectra, conditional, batch_size: int = 1024) -> np.ndarray:
    """Activations of the encoder's last hidden layer (n, width) for ``spectra`` (n, n_pixels) at
    their ``conditional`` parameters (physical units: an array (n, n_cp) or a dict for one star).

    Mirrors the run's ``encode`` (scaled flux and conditional parameters into the encoder) but stops
    before the encoder's last linear layer, so the latent z is that layer (plus the latent
    activation) applied to h. Batched, without gradients, on the model's device.
    """
    import torch

    from .models.disentangler import hidden_features

    model = run.model
    width = feature_width(run)
    spectra = np.asarray(spectra, np.float32)
    if spectra.ndim == 1:
        spectra = spectra[None]
    cp = _conditional_rows(run, conditional, len(spectra))
    device = next(model.parameters()).device
    parts = []
    with torch.no_grad():
        for start in range(0, len(spectra), batch_size):
            flux = torch.as_tensor(run.check_spectra(spectra[start:start + batch_size]), device=device)
            scaled = torch.cat([model.scale_flux(flux), model.cp_inputs(torch.as_tensor(cp[start:start + batch_size],
                                                                                         device=device))], dim=1)
            parts.append(hidden_features(model.encoder, scaled).float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)


# ============================================================================ projections
def projection_params(method: str, params: dict | None = None) -> dict:
    """The method's parameters with defaults filled in, validated (clear message on bad values)."""
    if method not in METHODS:
        raise ExploreError(f"method must be one of {list(METHODS)}; got {method!r}.")
    result = dict(DEFAULT_PARAMS[method])
    for name, value in (params or {}).items():
        if name not in result:
            raise ExploreError(f"{METHODS[method]} has no parameter {name!r}; expected {sorted(result) or 'none'}.")
        low, high, kind = PARAM_LIMITS[name]
        try:
            value = kind(value)
        except (TypeError, ValueError):
            raise ExploreError(f"{name} must be a number; got {value!r}.") from None
        if not low <= value <= high:
            raise ExploreError(f"{name} must lie in {low:g}–{high:g}; got {value:g}.")
        result[name] = value
    return result


def check_projectable(n: int, method: str, params: dict) -> None:
    if n < 5:
        raise ExploreError(f"At least 5 objects are needed for a projection; this run has {n}.")
    if method == "tsne" and 3 * params["perplexity"] >= n:
        raise ExploreError(f"t-SNE needs more than 3 × perplexity objects: lower the perplexity below {n / 3:.0f}.")
    if method == "umap" and params["n_neighbors"] >= n:
        raise ExploreError(f"UMAP needs fewer neighbours than objects ({n}).")


def cache_key(run_id: str, representation: str) -> str:
    """The key :func:`astrocore.embeddings.project` caches under (shared with ``astrocore embed``)."""
    return f"{run_id}/{representation}"


def projection_name(representation: str, method: str, params: dict, seed: int = 0) -> str:
    text = json.dumps({"params": projection_params(method, params), "seed": int(seed)}, sort_keys=True)
    return f"{representation}-{method}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def projection_file(run_folder, representation: str, method: str, params: dict, seed: int = 0) -> Path:
    """Where a projection of this run is kept: ``runs/ID/embeddings/<rep>-<method>-<hash>.npz``."""
    return Path(run_folder) / "embeddings" / f"{projection_name(representation, method, params, seed)}.npz"


def compute_projection(data: ExploreData, representation: str, method: str, params: dict | None = None,
                       seed: int = 0, folder=None) -> np.ndarray:
    """Project inline (used for PCA, and by the background job for UMAP / t-SNE)."""
    from .embeddings import project

    params = projection_params(method, params)
    values = representation_values(data, representation)
    check_projectable(len(values), method, params)
    coordinates, _ = project(values, method, key=cache_key(data.run_id, representation), folder=folder, seed=seed,
                             **params)
    return coordinates


def read_projection(run_folder, representation: str, method: str, params: dict | None = None,
                    seed: int = 0) -> np.ndarray | None:
    from .embeddings import read_coordinates

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
    from . import jobs

    run_folder = Path(run_folder).resolve()
    name = "embed-" + projection_name(representation, method, params or {}, seed)
    command = embed_command(run_folder, representation, method, params, seed)
    return jobs.launch(run_folder, name, command, run_folder / "jobs" / f"{name}.log",
                       projection_file(run_folder, representation, method, params or {}, seed), kind="embed")


def projection_status(run_folder, representation: str, method: str, params: dict | None = None,
                      seed: int = 0) -> dict:
    from . import jobs

    return jobs.job_status(run_folder, "embed-" + projection_name(representation, method, params or {}, seed))


def cancel_projection(run_folder, representation: str, method: str, params: dict | None = None, seed: int = 0,
                      wait: bool = False) -> dict:
    """Stop a running UMAP / t-SNE job (its process group is terminated); returns its status."""
    from . import jobs

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


def embedding_figure(coordinates, colour, colour_name: str, method: str, hover=None, shown: np.ndarray | None = None,
                     selected: np.ndarray | None = None, marked: int | None = None, height: int = 560,
                     title: str = "", revision: int = 0):
    """The scatter of the projection. Every trace's ``customdata`` holds full-set row numbers, so
    a selection maps back to the data even when only a subsample is drawn.

    ``selected`` rows are highlighted as plotly highlights a lasso (``selectedpoints``: the other
    points are dimmed); leave it None when the chart's own lasso already shows them (see
    :func:`selection_overlay`). ``revision`` only changes the
    figure's identity (a new value makes Streamlit mount a fresh chart, dropping a stale lasso).
    """
    import plotly.colors as pc
    import plotly.graph_objects as go

    coordinates = np.asarray(coordinates, np.float32)
    n = len(coordinates)
    shown = np.arange(n) if shown is None else np.asarray(shown, int)
    colour = np.asarray(colour)
    hover = None if hover is None else np.asarray(hover, dtype=object)
    size = 4 if len(shown) > 5000 else 6 if len(shown) > 1000 else 8
    kind = colour_kind(colour, colour_name)
    title_text = COLUMN_TITLES.get(colour_name, colour_name)
    figure = go.Figure()

    chosen = None
    if selected is not None:  # highlighted the way plotly highlights its own lasso: the rest is dimmed
        chosen = np.zeros(n, bool)
        chosen[np.asarray(selected, int)] = True

    def trace(index, **marker):
        return go.Scattergl(x=coordinates[index, 0], y=coordinates[index, 1], mode="markers",
                            customdata=index, text=None if hover is None else hover[index],
                            hovertemplate="%{text}<extra></extra>" if hover is not None else None,
                            marker=dict(size=size, opacity=0.85, line=dict(width=0), **marker),
                            selectedpoints=None if chosen is None else np.flatnonzero(chosen[index]),
                            selected=dict(marker=dict(opacity=1.0)), unselected=dict(marker=dict(opacity=0.25)))

    if kind == "continuous":
        values = colour.astype(float)
        finite = values[np.isfinite(values)]
        scale = "RdYlBu" if colour_name == "teff" else "Viridis"
        figure.add_trace(trace(shown, color=values[shown], colorscale=scale, showscale=True,
                               cmin=float(finite.min()) if finite.size else None,
                               cmax=float(finite.max()) if finite.size else None,
                               colorbar=dict(title=dict(text=title_text), thickness=14)))
        figure.data[0].name = "objects"
        figure.data[0].showlegend = False
    else:
        uniques, codes = np.unique(colour.astype(str), return_inverse=True)
        codes = codes.ravel()
        if len(uniques) <= 24:
            palette = pc.qualitative.Safe + pc.qualitative.Pastel
            for code, value in enumerate(uniques):
                index = shown[codes[shown] == code]
                if len(index):
                    figure.add_trace(trace(index, color=palette[code % len(palette)]))
                    figure.data[-1].name = f"{title_text} {value}" if colour_name == "fingerprint" else str(value)
        else:  # many categories (e.g. hundreds of fingerprints): one trace, a cyclic scale
            figure.add_trace(trace(shown, color=codes[shown] % 24, colorscale="Turbo", showscale=False))
            figure.data[0].name = "objects"
            figure.data[0].showlegend = False
    if marked is not None and 0 <= marked < n:
        figure.add_trace(go.Scatter(x=[coordinates[marked, 0]], y=[coordinates[marked, 1]], mode="markers",
                                    name="picked object", customdata=[marked], hoverinfo="skip",
                                    marker=dict(symbol="star", size=18, color="#000",
                                                line=dict(color="#fff", width=1.5))))
    axis = {"pca": "PC", "umap": "UMAP", "tsne": "t-SNE"}.get(method, method)
    figure.update_layout(height=height, template="plotly_white", dragmode="lasso", clickmode="event+select",
                         margin=dict(l=50, r=20, t=40 if title else 20, b=45), title=dict(text=title) if title else None,
                         xaxis=dict(title=f"{axis} 1", showline=True, mirror=True, linecolor="#444", zeroline=False),
                         yaxis=dict(title=f"{axis} 2", showline=True, mirror=True, linecolor="#444", zeroline=False),
                         legend=dict(orientation="h", yanchor="top", y=-0.12, x=0), uirevision=method,
                         meta={"explorer": True, "n": int(n), "shown": len(shown), "revision": int(revision),
                               "highlighted": None if selected is None else len(selected)})
    return figure


# ============================================================================ selections
def _inside_polygon(points: np.ndarray, xs, ys) -> np.ndarray:
    from matplotlib.path import Path as PolygonPath

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


# ============================================================================ linked views
MAX_BAND_SPECTRA = 1000


def _quantiles(values: np.ndarray, fractions) -> np.ndarray:
    """Quantiles along axis 0 with linear interpolation (numpy's default method), through one sort
    (several times faster than ``np.percentile`` on (n, 7214) arrays)."""
    ordered = np.sort(values, axis=0)
    position = np.asarray(fractions, float) * (len(ordered) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(ordered) - 1)
    weight = (position - low)[:, None].astype(ordered.dtype)
    return ordered[low] * (1 - weight) + ordered[high] * weight


def band_statistics(spectra: np.ndarray, index, max_spectra: int | None = MAX_BAND_SPECTRA,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """16th, 50th and 84th percentile of the selected spectra and of the rest: arrays (3, n_pixels).

    A group larger than ``max_spectra`` is summarised by a reproducible random subsample of that
    many spectra (a display statistic: with 1000 spectra a percentile is known to about 1 % of
    the band width), which keeps a lasso over 10,000 APOGEE spectra well under a second.
    """
    spectra = np.asarray(spectra)
    mask = np.zeros(len(spectra), bool)
    mask[np.asarray(index, int)] = True
    rng = np.random.default_rng(seed)
    result = {}
    for name, rows in (("selection", mask), ("rest", ~mask)):
        rows = np.flatnonzero(rows)
        if not len(rows):
            continue
        if max_spectra and len(rows) > max_spectra:
            rows = np.sort(rng.choice(rows, size=int(max_spectra), replace=False))
        result[name] = _quantiles(spectra[rows].astype(np.float32, copy=False), [0.16, 0.5, 0.84])
    return result


def selection_spectra_figure(wavelength, spectra, index, height: int = 380):
    """Median and 16-84 % band of the selection against the rest. SVG lines (not WebGL): the
    browser draws six lines of a few thousand points faster than it sets up a WebGL context."""
    import plotly.graph_objects as go

    from .plots import FLUX_TITLE, WAVELENGTH_TITLE

    stats = band_statistics(spectra, index)
    wavelength = np.asarray(wavelength, np.float32)
    colours = {"selection": ("#dd6b20", "rgba(221,107,32,0.25)"), "rest": ("#4a5568", "rgba(74,85,104,0.18)")}
    figure = go.Figure()
    n_sel = len(np.asarray(index))
    for name in ("rest", "selection"):
        if name not in stats:
            continue
        low, median, high = stats[name]
        line, fill = colours[name]
        label = f"selection ({n_sel})" if name == "selection" else f"rest ({len(spectra) - n_sel})"
        figure.add_trace(go.Scatter(x=wavelength, y=high, mode="lines", line=dict(width=0), showlegend=False,
                                    hoverinfo="skip", name=f"{name} 84 %"))
        figure.add_trace(go.Scatter(x=wavelength, y=low, mode="lines", line=dict(width=0), fill="tonexty",
                                    fillcolor=fill, name=f"{label} 16–84 %", hoverinfo="skip"))
        figure.add_trace(go.Scatter(x=wavelength, y=median, mode="lines", line=dict(color=line, width=1.4),
                                    name=f"{label} median"))
    figure.update_layout(height=height, template="plotly_white", margin=dict(l=60, r=20, t=30, b=45),
                         xaxis=dict(title=WAVELENGTH_TITLE, showline=True, mirror=True, linecolor="#444"),
                         yaxis=dict(title=FLUX_TITLE, showline=True, mirror=True, linecolor="#444"),
                         legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0),
                         meta={"linked": "spectra", "n_selected": n_sel})
    return figure


def histogram_columns(data: ExploreData) -> list[str]:
    return [c for c in ("teff", "logg", "feh", "afe", "recon_error") if c in data.table]


def label_histograms_figure(data: ExploreData, index, columns=None, height: int = 300):
    """One panel per label: the selection's histogram against the whole set (both as densities)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    columns = list(columns or histogram_columns(data))
    if not columns:
        raise ExploreError("This run has no numeric labels to histogram.")
    index = np.asarray(index, int)
    figure = make_subplots(rows=1, cols=len(columns), horizontal_spacing=0.06)
    for i, name in enumerate(columns, start=1):
        values = data.table[name].to_numpy(float)
        finite = values[np.isfinite(values)]
        if not finite.size:
            continue
        edges = np.histogram_bin_edges(finite, bins=min(30, max(5, int(np.sqrt(finite.size)))))
        for label, rows, colour in (("all", slice(None), "#a0aec0"), ("selection", index, "#dd6b20")):
            counts, _ = np.histogram(values[rows], bins=edges, density=False)
            total = max(counts.sum(), 1)
            figure.add_trace(go.Bar(x=0.5 * (edges[1:] + edges[:-1]), y=counts / total, width=np.diff(edges),
                                    marker=dict(color=colour), opacity=0.55 if label == "all" else 0.75,
                                    name=label, showlegend=i == 1, legendgroup=label), row=1, col=i)
        figure.update_xaxes(title_text=COLUMN_TITLES.get(name, name), row=1, col=i, showline=True, mirror=True,
                            linecolor="#444")
    figure.update_yaxes(title_text="fraction", row=1, col=1)
    figure.update_layout(barmode="overlay", height=height, template="plotly_white",
                         margin=dict(l=60, r=20, t=30, b=50), legend=dict(orientation="h", y=1.12, x=0),
                         meta={"linked": "histograms", "n_selected": len(index)})
    return figure


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


def neighbours_figure(wavelength, query, spectra, rows, names, offset: float = 0.0, height: int = 380):
    """The query spectrum (black) with its neighbours' spectra; ``query`` is a flux array (a row of
    ``spectra`` or an uploaded spectrum on the same grid); ``names`` are the query's then the rows'."""
    import plotly.graph_objects as go

    from .plots import FLUX_TITLE, WAVELENGTH_TITLE

    wavelength = np.asarray(wavelength, np.float32)
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=wavelength, y=np.asarray(query, np.float32), mode="lines",
                                name=f"{names[0]} (query)", line=dict(color="#000", width=1.6)))
    for i, row in enumerate(rows):
        figure.add_trace(go.Scatter(x=wavelength, y=np.asarray(spectra[int(row)], np.float32) + offset * (i + 1),
                                    mode="lines", name=names[i + 1], line=dict(width=1), opacity=0.7))
    figure.update_layout(height=height, template="plotly_white", margin=dict(l=60, r=20, t=30, b=45),
                         xaxis=dict(title=WAVELENGTH_TITLE, showline=True, mirror=True, linecolor="#444"),
                         yaxis=dict(title=FLUX_TITLE, showline=True, mirror=True, linecolor="#444"),
                         legend=dict(orientation="v", x=1.01, y=1), meta={"linked": "neighbours"})
    return figure


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
    from .app_logic import MAX_UPLOAD_MB, UploadError, describe_object, load_uploaded_spectra
    from .data.dataset import DataError
    from .data.readers import check_compatible, resample_to

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
    cp = _conditional_rows(run, values, 1)
    if representation == "z":
        return np.asarray(run.encode(spectrum.flux[None], cp)[0], np.float32)
    if representation == "h":
        return encoder_features(run, spectrum.flux[None], cp)[0]
    raise ExploreError(f"representation must be one of {list(REPRESENTATIONS)}; got {representation!r}.")


def upload_neighbours(run, data: ExploreData, spectrum: UploadedSpectrum, representation: str, k: int = 5,
                      conditional: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` objects of the run closest to an uploaded spectrum in ``representation``."""
    values = representation_values(data, representation)
    return neighbours_of(values, query_vector(run, spectrum, representation, conditional), k)


# ============================================================================ cutouts
#: Effective wavelengths [Å] of common photometric bands, to order a cutout's bands from blue to red.
BAND_WAVELENGTHS = {
    "FUV": 1530, "NUV": 2310, "u": 3551, "U": 3650, "B": 4450, "g": 4686, "BP": 5110, "V": 5510,
    "r": 6166, "G": 6230, "R": 6580, "i": 7480, "RP": 7770, "I": 8060, "z": 8932, "y": 9633, "Y": 10310,
    "J": 12350, "H": 16620, "Ks": 21460, "K": 21590, "W1": 33680, "W2": 46180, "W3": 120820, "W4": 221940,
}
MAX_CUTOUTS = 48


def band_wavelength(name: str) -> float | None:
    """The effective wavelength [Å] of a band called e.g. ``r``, ``sdss_r``, ``HSC-i`` or ``W1``."""
    import re

    name = str(name).strip()
    for candidate in (name, re.split(r"[_\-. /]", name)[-1], name.removesuffix("-band").removesuffix("_band")):
        if candidate in BAND_WAVELENGTHS:
            return float(BAND_WAVELENGTHS[candidate])
    return None


def bands_blue_to_red(bands) -> list[int]:
    """Plane indices ordered from the bluest band to the reddest (known band names by wavelength;
    unknown names keep their order, which is assumed to run from blue to red)."""
    bands = list(bands)
    known = [band_wavelength(b) for b in bands]
    if any(w is None for w in known):
        return list(range(len(bands)))
    return sorted(range(len(bands)), key=lambda i: known[i])


def rgb_bands(bands) -> tuple[int, int, int]:
    """Plane indices (R, G, B) of the default colour composite: the bands ordered blue to red, the
    bluest dropped when there are five or more (u of ugriz is noisy), then the first three: reddest
    of them -> R. ugriz -> (i, r, g) like SDSS's colour images; grz -> (z, r, g). With fewer than
    three bands the reddest fills the missing channels."""
    order = bands_blue_to_red(bands)
    if len(order) >= 5:
        order = order[1:]
    chosen = order[:3]
    while len(chosen) < 3:
        chosen.append(chosen[-1])
    return chosen[2], chosen[1], chosen[0]


def cutout_modes(bands) -> dict[str, str]:
    """Display modes of cutouts: ``rgb`` (a colour composite) and one greyscale mode per band."""
    if not bands:
        return {}
    r, g, b = rgb_bands(bands)
    modes = {"rgb": f"colour ({bands[r]}, {bands[g]}, {bands[b]} → R, G, B)"}
    modes.update({str(name): f"{name} band" for name in bands})
    return modes


def cutout_rgb(images: np.ndarray, bands, mode: str = "rgb", stretch: float | None = None,
               q: float = 8.0) -> np.ndarray:
    """Cutouts (k, n_bands, h, w) as 8-bit RGB images (k, h, w, 3): a Lupton et al. (2004) asinh
    composite (``astropy.visualization.make_lupton_rgb``) of three bands, or one band in grey
    (``mode`` = its name). One stretch for all of them (from the pixels' 99.5th percentile above
    the per-band median sky, unless ``stretch`` is given), so brightnesses compare across the grid."""
    from astropy.visualization import make_lupton_rgb

    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ExploreError(f"Cutouts must be an array (k, n_bands, height, width); got shape {images.shape}.")
    bands = list(bands)
    if mode == "rgb":
        planes = rgb_bands(bands)
    elif mode in bands:
        planes = (bands.index(mode),) * 3
    else:
        raise ExploreError(f"mode must be 'rgb' or one of the bands {bands}; got {mode!r}.")
    if not len(images):
        return np.zeros((0,) + images.shape[2:] + (3,), np.uint8)
    chosen = np.nan_to_num(images[:, list(planes)], nan=0.0, posinf=0.0, neginf=0.0)
    sky = np.median(chosen, axis=(0, 2, 3), keepdims=True)
    chosen = chosen - sky
    if stretch is None:  # half the 99.5th percentile: compact sources reach the bright end of the scale
        stretch = 0.5 * float(np.percentile(chosen, 99.5))
        stretch = stretch if stretch > 0 else float(np.max(np.abs(chosen))) or 1.0
    return np.stack([make_lupton_rgb(c[0], c[1], c[2], minimum=0.0, stretch=stretch, Q=q) for c in chosen])


def _png_data_uri(image: np.ndarray) -> str:
    import base64

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def cutout_grid_figure(images, bands, rows, names=None, mode: str = "rgb", columns: int = 8,
                       max_cutouts: int = MAX_CUTOUTS, tile_px: int = 110, title: str = "", linked: str = "cutouts"):
    """A grid of the cutouts of ``rows`` (full-set row numbers into ``images`` (n, n_bands, h, w)),
    as RGB composites or one band in grey (see :func:`cutout_rgb`), one name under each.

    The grid is one mosaic image sent as a PNG (a few tens of kB for 48 cutouts), not one trace per
    cutout. At most ``max_cutouts`` are drawn (the first rows given; the meta says how many).
    """
    import plotly.graph_objects as go

    rows = np.asarray(rows, int)[:max_cutouts]
    names = [str(n) for n in (names if names is not None else rows)][:len(rows)]
    images = np.asarray(images)
    if images.ndim != 4:
        raise ExploreError(f"Cutouts must be an array (n, n_bands, height, width); got shape {images.shape}.")
    figure = go.Figure()
    height_px, width_px = images.shape[2], images.shape[3]
    columns = max(1, min(int(columns), len(rows) or 1))
    n_rows = max(1, -(-len(rows) // columns))
    gap = max(1, width_px // 16)
    label = int(np.ceil(height_px * 15 / tile_px))  # room for a name under each tile (about 15 screen px)
    step_x, step_y = width_px + gap, height_px + gap + label
    mosaic = np.full((n_rows * step_y, columns * step_x - gap, 3), 255, np.uint8)
    tiles = cutout_rgb(images[rows], bands, mode) if len(rows) else []
    annotations = []
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        y0, x0 = r * step_y, c * step_x
        mosaic[y0:y0 + height_px, x0:x0 + width_px] = tile
        annotations.append(dict(x=x0 + width_px / 2, y=y0 + height_px + label / 2, text=names[i], showarrow=False,
                                xanchor="center", yanchor="middle", font=dict(size=10, color="#333")))
    figure.add_trace(go.Image(source=_png_data_uri(mosaic), hoverinfo="skip"))
    figure.update_layout(
        height=int(n_rows * tile_px * step_y / height_px + (40 if title else 10)), template="plotly_white",
        margin=dict(l=4, r=4, t=34 if title else 4, b=4), title=dict(text=title) if title else None,
        xaxis=dict(visible=False, range=[-0.5, mosaic.shape[1] - 0.5], constrain="domain"),
        yaxis=dict(visible=False, range=[mosaic.shape[0] - 0.5, -0.5], scaleanchor="x", constrain="domain"),
        annotations=annotations, meta={"linked": linked, "n_cutouts": len(tiles), "mode": mode})
    return figure


# ============================================================================ tags
def tags_path(run_folder) -> Path:
    return Path(run_folder) / "tags.json"


def load_tags(run_folder) -> dict[str, dict]:
    path = tags_path(run_folder)
    if not path.exists():
        return {}
    try:
        tags = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return tags if isinstance(tags, dict) else {}


def _write_tags(run_folder, tags: dict) -> None:
    path = tags_path(run_folder)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tags-", suffix=".json")
    with os.fdopen(handle, "w") as stream:
        json.dump(tags, stream, indent=1)
    os.replace(temporary, path)


def save_tag(run_folder, name: str, data: ExploreData, index) -> dict:
    """Keep a named selection in ``runs/ID/tags.json`` (ids and row numbers); replaces a same-named tag."""
    name = str(name).strip()
    if not name:
        raise ExploreError("Give the selection a name.")
    if len(name) > 80:
        raise ExploreError("Tag names are limited to 80 characters.")
    index = np.unique(np.asarray(index, int))
    if not len(index):
        raise ExploreError("The selection is empty: lasso some objects first.")
    tags = load_tags(run_folder)
    tags[name] = {"rows": index.tolist(), "ids": data.ids[index].tolist(),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_tags(run_folder, tags)
    return tags[name]


def delete_tag(run_folder, name: str) -> None:
    tags = load_tags(run_folder)
    if tags.pop(name, None) is not None:
        _write_tags(run_folder, tags)


def tag_rows(data: ExploreData, tag: dict) -> np.ndarray:
    """Rows of a tag, found by id (robust to reordering), falling back to stored rows."""
    position = {value: i for i, value in enumerate(data.ids)}
    rows = [position[i] for i in tag.get("ids", []) if i in position]
    if not rows:
        rows = [r for r in tag.get("rows", []) if 0 <= int(r) < len(data)]
    return np.unique(np.asarray(rows, int))


# ============================================================================ export
def selection_table(data: ExploreData, index, coordinates=None, method: str = "", representation: str = "") -> Table:
    """An astropy Table of the selection: id, labels (with units), projection coordinates, latent z."""
    from .data.dataset import LABEL_UNITS

    index = np.asarray(index, int)
    table = Table()
    table["row"] = index
    for name in data.table.columns:
        column = data.table[name].to_numpy()[index]
        if column.dtype.kind == "O":
            column = column.astype(str)
        table[name] = column
        if name in LABEL_UNITS:
            table[name].unit = "K" if LABEL_UNITS[name] == "K" else None
            table[name].description = LABEL_TITLES.get(name, name)
    if coordinates is not None:
        coordinates = np.asarray(coordinates, float)
        table[f"{method or 'proj'}_1"] = coordinates[index, 0]
        table[f"{method or 'proj'}_2"] = coordinates[index, 1]
    for i in range(data.latent.shape[1]):
        table[f"z_{i}"] = data.latent[index, i].astype(float)
    table.meta["run"] = data.run_id
    if representation:
        table.meta["repr"] = representation
    return table


def export_bytes(table: Table, fmt: str) -> bytes:
    """The table as CSV, a FITS binary table or a VOTable (all through astropy)."""
    buffer = io.BytesIO()
    if fmt == "csv":
        text = io.StringIO()
        table.write(text, format="ascii.csv")
        return text.getvalue().encode()
    if fmt == "fits":
        import warnings

        from astropy.io import fits

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdu = fits.table_to_hdu(table)
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
        return buffer.getvalue()
    if fmt == "votable":
        from astropy.io.votable import from_table, writeto

        writeto(from_table(table), buffer)
        return buffer.getvalue()
    raise ExploreError(f"format must be one of {list(EXPORT_FORMATS)}; got {fmt!r}.")


def read_export(payload: bytes, fmt: str) -> Table:
    """Read back what :func:`export_bytes` wrote (used by the tests and handy in a notebook)."""
    if fmt == "csv":
        return Table.read(payload.decode(), format="ascii.csv")
    if fmt == "fits":
        return Table.read(io.BytesIO(payload), format="fits")
    if fmt == "votable":
        return Table.read(io.BytesIO(payload), format="votable")
    raise ExploreError(f"format must be one of {list(EXPORT_FORMATS)}; got {fmt!r}.")


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
