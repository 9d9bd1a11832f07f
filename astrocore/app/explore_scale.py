"""The explorer on large runs (up to millions of objects): what the scatter draws.

A browser draws some tens of thousands of WebGL points fluently, not a million. Above
:data:`astrocore.app.explore.MAX_DISPLAY` objects the scatter shows a capped sample of points over
a density image of *all* objects (a 2-d histogram drawn as a heatmap, datashader-style), and
"zooming" to a window (e.g. a selection's bounding box) redraws the points inside that window
only, so zooming in shows every object once few enough remain. Lasso, box and neighbour searches
always use every object (:func:`astrocore.app.explore.selection_indices`). Streamlit-free and
tested; the page and :func:`astrocore.app.explore_figures.embedding_figure` draw the plan.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import explore

#: Cells of the density image along each axis (the chart is ~900 x 560 px: ~5 px per cell).
DENSITY_BINS = 180


@dataclass
class DisplayPlan:
    """What to draw: ``shown`` (sorted full-set row numbers drawn as points), ``n_inside`` (objects in
    the window), ``window`` ((x0, x1, y0, y1) or None for everything) and, when not every object
    inside it is drawn, ``density`` = (x centres, y centres, counts (ny, nx)) of all of them."""

    shown: np.ndarray
    n_total: int
    n_inside: int
    window: tuple[float, float, float, float] | None
    density: tuple[np.ndarray, np.ndarray, np.ndarray] | None

    @property
    def complete(self) -> bool:
        return len(self.shown) == self.n_inside

    def caption(self) -> str:
        """What the chart shows, in words (said on screen beside it)."""
        where = "in this window" if self.window is not None else ""
        if self.complete:
            if self.window is None:
                return ""
            return (f"Zoomed: all {self.n_inside:,} objects in this window are drawn (of {self.n_total:,}). "
                    "Lasso, box and neighbour searches use all objects.")
        return (f"Drawing {len(self.shown):,} of the {self.n_inside:,} objects {where} as points (a random sample) "
                f"over a density image of all of them (grey: log number of objects per cell); lasso, box and "
                "neighbour searches use all objects. Zoom to a selection to see its objects one by one.").replace("  ", " ")


def priorities(n: int, seed: int = 0) -> np.ndarray:
    """A reproducible random rank of every object: samples take the lowest ranks, so a zoomed view
    keeps the points the whole view drew and adds more."""
    return np.random.default_rng(seed).permutation(n)


def inside(coordinates: np.ndarray, window) -> np.ndarray:
    """Boolean mask of the objects inside ``window`` (x0, x1, y0, y1); all of them without one."""
    coordinates = np.asarray(coordinates)
    if window is None:
        return np.ones(len(coordinates), bool)
    x0, x1, y0, y1 = window
    x, y = coordinates[:, 0], coordinates[:, 1]
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def window_around(coordinates: np.ndarray, rows, pad: float = 0.08) -> tuple[float, float, float, float] | None:
    """The bounding box of ``rows`` with ``pad`` of its size (at least a little) on each side; None
    without rows."""
    rows = np.asarray(rows, int)
    if not len(rows):
        return None
    points = np.asarray(coordinates, float)[rows]
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    full = np.ptp(np.asarray(coordinates, float), axis=0)
    dx = max(x1 - x0, 1e-3 * max(full[0], 1e-9)) * pad + 1e-9
    dy = max(y1 - y0, 1e-3 * max(full[1], 1e-9)) * pad + 1e-9
    return (float(x0 - dx), float(x1 + dx), float(y0 - dy), float(y1 + dy))


def density_image(coordinates: np.ndarray, window=None, bins: int = DENSITY_BINS, mask=None):
    """A 2-d histogram of the objects (inside ``window``, or of those in ``mask``): (x centres,
    y centres, counts (ny, nx) as float32, rows are y as a heatmap wants them)."""
    coordinates = np.asarray(coordinates, np.float32)
    points = coordinates if mask is None else coordinates[mask]
    if window is None:
        lo, hi = points.min(axis=0) if len(points) else (0, 0), points.max(axis=0) if len(points) else (1, 1)
        window = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
    x0, x1, y0, y1 = window
    x1, y1 = (x1 if x1 > x0 else x0 + 1.0), (y1 if y1 > y0 else y0 + 1.0)
    counts, xe, ye = np.histogram2d(points[:, 0], points[:, 1], bins=bins, range=[[x0, x1], [y0, y1]])
    return (0.5 * (xe[1:] + xe[:-1])).astype(np.float32), (0.5 * (ye[1:] + ye[:-1])).astype(np.float32), \
        counts.T.astype(np.float32)


def display_plan(coordinates: np.ndarray, window=None, max_points: int | None = None, seed: int = 0,
                 rank: np.ndarray | None = None, bins: int = DENSITY_BINS) -> DisplayPlan:
    """Which objects to draw as points, and the density image behind them when not all are drawn.

    ``rank`` (see :func:`priorities`) may be passed to avoid recomputing it for a large set."""
    coordinates = np.asarray(coordinates)
    n = len(coordinates)
    max_points = explore.MAX_DISPLAY if max_points is None else int(max_points)
    mask = inside(coordinates, window)
    rows = np.flatnonzero(mask)
    if len(rows) <= max_points:
        return DisplayPlan(rows, n, len(rows), window, None)
    rank = priorities(n, seed) if rank is None else np.asarray(rank)
    chosen = rows[np.argpartition(rank[rows], max_points - 1)[:max_points]]
    return DisplayPlan(np.sort(chosen), n, len(rows), window, density_image(coordinates, window, bins, mask))
