"""The embedding explorer's logic: projections of a run's representations, colours, selections,
linked views, nearest neighbours, tags and export. Importable without Streamlit; the page
``pages/explore.py`` only draws what these functions return.

Indices are always row numbers of the run's full dataset: a display subsample (above
:data:`MAX_DISPLAY` points) never changes what a selection or a neighbour search sees.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.table import Table

from .data.dataset import LABEL_TITLES

MAX_DISPLAY = 30_000
REPRESENTATIONS = {"z": "latent z", "X": "input spectra X"}
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
    """Everything the explorer needs about one run, row-aligned with its dataset."""

    run_id: str
    ids: np.ndarray            # (n,) str
    table: pd.DataFrame        # id, labels, fingerprint, split, recon_error
    latent: np.ndarray         # (n, d)
    spectra: np.ndarray | None  # (n, n_pixels) or None when the data cannot be rebuilt
    wavelength: np.ndarray | None

    def __len__(self) -> int:
        return len(self.ids)


def load_explore_data(run, dataset=None) -> ExploreData:
    """Collect ids, labels, split, reconstruction error, latents and spectra of ``run``.

    ``dataset`` defaults to the run's own data (rebuilt from ``run.record.data``); without it the
    labels saved with the run are used and the spectra views are unavailable.
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
    return ExploreData(run_id=run.id, ids=ids, table=table, latent=latent,
                       spectra=None if dataset is None else np.asarray(dataset.spectra, np.float32),
                       wavelength=None if dataset is None else np.asarray(dataset.wavelength, float))


def representation_values(data: ExploreData, representation: str) -> np.ndarray:
    if representation == "z":
        return data.latent
    if representation == "X":
        if data.spectra is None:
            raise ExploreError("The input spectra of this run cannot be rebuilt, so X cannot be shown; use z.")
        return data.spectra
    raise ExploreError(f"representation must be one of {list(REPRESENTATIONS)}; got {representation!r}.")


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
                     title: str = ""):
    """The scatter of the projection. Every trace's ``customdata`` holds full-set row numbers, so
    a selection maps back to the data even when only a subsample is drawn."""
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

    def trace(index, **marker):
        return go.Scattergl(x=coordinates[index, 0], y=coordinates[index, 1], mode="markers",
                            customdata=index, text=None if hover is None else hover[index],
                            hovertemplate="%{text}<extra></extra>" if hover is not None else None,
                            marker=dict(size=size, opacity=0.85, line=dict(width=0), **marker),
                            selected=dict(marker=dict(opacity=1.0)), unselected=dict(marker=dict(opacity=0.35)))

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
    if selected is not None and len(selected):
        index = np.intersect1d(np.asarray(selected, int), shown)
        figure.add_trace(go.Scattergl(x=coordinates[index, 0], y=coordinates[index, 1], mode="markers",
                                      name=f"selection ({len(selected)})", customdata=index, hoverinfo="skip",
                                      marker=dict(size=size + 4, color="rgba(0,0,0,0)",
                                                  line=dict(color="#111", width=1.2))))
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
                         meta={"explorer": True, "n": int(n), "shown": len(shown)})
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
def band_statistics(spectra: np.ndarray, index) -> dict[str, np.ndarray]:
    """Median and 16-84 % band of the selected spectra and of the rest."""
    spectra = np.asarray(spectra)
    mask = np.zeros(len(spectra), bool)
    mask[np.asarray(index, int)] = True
    result = {}
    for name, rows in (("selection", mask), ("rest", ~mask)):
        if rows.any():
            low, median, high = np.percentile(spectra[rows], [16, 50, 84], axis=0)
            result[name] = np.stack([low, median, high])
    return result


def selection_spectra_figure(wavelength, spectra, index, height: int = 380):
    import plotly.graph_objects as go

    from .plots import FLUX_TITLE, WAVELENGTH_TITLE

    stats = band_statistics(spectra, index)
    wavelength = np.asarray(wavelength, float)
    colours = {"selection": ("#dd6b20", "rgba(221,107,32,0.25)"), "rest": ("#4a5568", "rgba(74,85,104,0.18)")}
    figure = go.Figure()
    n_sel = len(np.asarray(index))
    for name in ("rest", "selection"):
        if name not in stats:
            continue
        low, median, high = stats[name]
        line, fill = colours[name]
        label = f"selection ({n_sel})" if name == "selection" else f"rest ({len(spectra) - n_sel})"
        figure.add_trace(go.Scattergl(x=wavelength, y=high, mode="lines", line=dict(width=0), showlegend=False,
                                      hoverinfo="skip", name=f"{name} 84 %"))
        figure.add_trace(go.Scattergl(x=wavelength, y=low, mode="lines", line=dict(width=0), fill="tonexty",
                                      fillcolor=fill, name=f"{label} 16–84 %", hoverinfo="skip"))
        figure.add_trace(go.Scattergl(x=wavelength, y=median, mode="lines", line=dict(color=line, width=1.4),
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


def nearest_neighbours(values: np.ndarray, index: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` objects closest to row ``index`` (Euclidean distance in ``values``, itself excluded).
    Returns (rows, distances), nearest first."""
    values = np.asarray(values, np.float32)
    index = int(index)
    if not 0 <= index < len(values):
        raise ExploreError(f"Object {index} is outside this run (0–{len(values) - 1}).")
    k = int(max(1, min(k, len(values) - 1)))
    distances = np.empty(len(values), np.float64)
    query = values[index].astype(np.float64)
    for start in range(0, len(values), 8192):  # chunks keep memory flat for big X
        block = values[start:start + 8192].astype(np.float64) - query
        distances[start:start + 8192] = np.sqrt(np.einsum("ij,ij->i", block, block))
    distances[index] = np.inf
    rows = np.argpartition(distances, k - 1)[:k] if k < len(values) - 1 else np.flatnonzero(np.isfinite(distances))
    rows = rows[np.argsort(distances[rows], kind="stable")]
    return rows, distances[rows]


def neighbours_table(data: ExploreData, rows, distances) -> pd.DataFrame:
    table = data.table.iloc[np.asarray(rows, int)].copy()
    table.insert(1, "distance", np.asarray(distances, float))
    table.insert(0, "row", np.asarray(rows, int))
    return table.reset_index(drop=True)


def neighbours_figure(wavelength, spectra, index: int, rows, names, offset: float = 0.0, height: int = 380):
    import plotly.graph_objects as go

    from .plots import FLUX_TITLE, WAVELENGTH_TITLE

    figure = go.Figure()
    figure.add_trace(go.Scattergl(x=wavelength, y=spectra[int(index)], mode="lines", name=f"{names[0]} (query)",
                                  line=dict(color="#000", width=1.6)))
    for i, row in enumerate(rows):
        figure.add_trace(go.Scattergl(x=wavelength, y=spectra[int(row)] + offset * (i + 1), mode="lines",
                                      name=names[i + 1], line=dict(width=1), opacity=0.7))
    figure.update_layout(height=height, template="plotly_white", margin=dict(l=60, r=20, t=30, b=45),
                         xaxis=dict(title=WAVELENGTH_TITLE, showline=True, mirror=True, linecolor="#444"),
                         yaxis=dict(title=FLUX_TITLE, showline=True, mirror=True, linecolor="#444"),
                         legend=dict(orientation="v", x=1.01, y=1), meta={"linked": "neighbours"})
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
