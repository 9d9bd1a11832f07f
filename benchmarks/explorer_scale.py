"""The embedding explorer on large runs (issue 22): projection times and what the scatter sends.

    python benchmarks/explorer_scale.py                          # 10^4, 10^5, 10^6 points; PCA, UMAP, t-SNE
    python benchmarks/explorer_scale.py --sizes 10000 100000 --methods umap
    python benchmarks/explorer_scale.py --out ''                 # print only

For each size n, the vectors are a synthetic 16-d latent (a mixture of 40 Gaussian clusters of
different widths, seed 0: a latent z of that many objects; real latents only change the constants).
Each projection is made as the explorer makes it (:func:`astrocore.embeddings.project`): UMAP and
openTSNE are *fitted on a random sample* of ``--fit-sample`` objects (default 20,000) and every other
object is placed by the fitted model's ``transform``, in chunks of 100,000; PCA likewise (fit on the
sample, project all). Reported per method: the fit and transform seconds and the total.

Then, on the UMAP map (PCA's when UMAP is not run), what the explorer's scatter costs: the display
plan (a capped random sample of points over a 2-d density image of all objects,
:mod:`astrocore.app.explore_scale`), the figure build time and its JSON size (what Streamlit sends),
against a figure of every point; a lasso over all n objects (what a selection costs on the server);
and a zoom to one cluster (the points inside a window are drawn, up to the cap).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from astrocore import embeddings  # noqa: E402
from astrocore.app import explore, explore_figures, explore_scale  # noqa: E402


def latent(n: int, dim: int = 16, clusters: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(values (n, dim) float32, a continuous "label" per object for colouring)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (clusters, dim)).astype(np.float32)
    widths = rng.uniform(0.3, 1.5, clusters).astype(np.float32)
    member = rng.integers(0, clusters, n)
    values = centres[member] + rng.standard_normal((n, dim), dtype=np.float32) * widths[member, None]
    label = (member / clusters + 0.05 * rng.standard_normal(n)).astype(np.float32)
    return values, label


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def hover_for(rows: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Hover texts like the explorer's (id, four labels, split) for the drawn rows only."""
    hover = np.empty(len(label), dtype=object)
    hover[rows] = [f"id {r} · Teff {4000 + 10 * (r % 200)} K · log g 2.00 · [Fe/H] {label[r]:+.2f} · "
                   "[α/Fe] +0.10 · train" for r in rows]
    return hover


def figure_costs(coordinates: np.ndarray, label: np.ndarray, method: str) -> dict:
    n = len(coordinates)
    rank, rank_seconds = timed(lambda: explore_scale.priorities(n))
    plan, plan_seconds = timed(lambda: explore_scale.display_plan(coordinates, rank=rank))
    hover, hover_seconds = timed(lambda: hover_for(plan.shown, label))
    figure, build_seconds = timed(lambda: explore_figures.embedding_figure(
        coordinates, label, "feh", method, hover=hover, shown=plan.shown, density=plan.density))
    text, json_seconds = timed(lambda: pio.to_json(figure, validate=False))
    every = go.Figure(go.Scattergl(x=coordinates[:, 0], y=coordinates[:, 1], mode="markers",
                                   marker=dict(color=label)), layout=dict(meta={"all": True}))
    every_text, every_seconds = timed(lambda: pio.to_json(every, validate=False))
    # A lasso over a third of the map (a hexagon around the centre), applied to all n objects.
    (x0, y0), (x1, y1) = coordinates.min(axis=0), coordinates.max(axis=0)
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 3, (y1 - y0) / 3
    angles = np.linspace(0, 2 * np.pi, 7)[:-1]
    event = {"selection": {"lasso": [{"x": list(cx + rx * np.cos(angles)), "y": list(cy + ry * np.sin(angles))}],
                           "points": [], "box": []}}
    selected, lasso_seconds = timed(lambda: explore.selection_indices(event, coordinates))
    # Zoom to one cluster: the objects near one point.
    centre = coordinates[0]
    near = np.flatnonzero(np.hypot(*(coordinates - centre).T) < 0.02 * np.hypot(x1 - x0, y1 - y0))
    window = explore_scale.window_around(coordinates, near)
    zoomed, zoom_seconds = timed(lambda: explore_scale.display_plan(coordinates, window=window, rank=rank))
    return {"drawn_points": int(len(plan.shown)), "density_image": plan.density is not None,
            "rank_ms": round(1e3 * rank_seconds, 1), "plan_ms": round(1e3 * plan_seconds, 1),
            "hover_ms": round(1e3 * hover_seconds, 1), "figure_build_ms": round(1e3 * build_seconds, 1),
            "to_json_ms": round(1e3 * json_seconds, 1), "figure_bytes": len(text),
            "every_point_figure_bytes": len(every_text), "every_point_to_json_ms": round(1e3 * every_seconds, 1),
            "lasso_objects": int(len(selected)), "lasso_ms": round(1e3 * lasso_seconds, 1),
            "zoom_window_objects": int(zoomed.n_inside), "zoom_drawn_points": int(len(zoomed.shown)),
            "zoom_density_image": zoomed.density is not None, "zoom_plan_ms": round(1e3 * zoom_seconds, 1)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--methods", nargs="+", default=["pca", "umap", "tsne"], choices=list(embeddings.METHODS))
    parser.add_argument("--fit-sample", type=int, default=embeddings.FIT_SAMPLE)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "explorer_scale.json"))
    args = parser.parse_args(argv)
    report = {"command": "python benchmarks/explorer_scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
              "python": platform.python_version(), "fit_sample": args.fit_sample, "dim": args.dim,
              "max_points_drawn": explore.MAX_DISPLAY, "load_average_1min_before": round(os.getloadavg()[0], 2),
              "sizes": {}}
    for n in args.sizes:
        values, label = latent(n, args.dim)
        entry, maps = {}, {}
        for method in args.methods:
            (coordinates, info), seconds = timed(lambda: embeddings.project(
                values, method, use_cache=False, fit_sample=args.fit_sample,
                **({"n_jobs": 2} if method == "tsne" else {})))
            maps[method] = coordinates
            entry[method] = {"seconds": round(seconds, 1), "fit_seconds": info.get("fit_seconds", round(seconds, 1)),
                             "transform_seconds": info.get("transform_seconds", 0.0),
                             "fitted_on": info.get("fit_sample", n)}
            print(f"n={n:,} {method}: {entry[method]}", file=sys.stderr, flush=True)
        shown_on = "umap" if "umap" in maps else next(iter(maps))
        entry["figure"] = {"map": shown_on, **figure_costs(maps[shown_on], label, shown_on)}
        print(f"n={n:,} figure: {entry['figure']}", file=sys.stderr, flush=True)
        report["sizes"][str(n)] = entry
        if args.out:  # after each size, so a long run leaves its finished sizes behind
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    report["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
