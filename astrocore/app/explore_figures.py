"""The explorer's plotly figures: the embedding scatter (WebGL), a selection's median spectrum
with its 16-84 % band, label histograms and neighbour spectra."""
from __future__ import annotations

import numpy as np
import plotly.colors as pc
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .explore import COLUMN_TITLES, ExploreData, ExploreError, colour_kind
from .plots import FLUX_TITLE, WAVELENGTH_TITLE, gapped


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
    stats = band_statistics(spectra, index)
    # NaN at detector gaps, so no line or band bridges them.
    stats = {name: tuple(gapped(wavelength, *values)[1]) for name, values in stats.items()}
    wavelength = gapped(wavelength)[0]
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


def neighbours_figure(wavelength, query, spectra, rows, names, offset: float = 0.0, height: int = 380,
                      xrange: tuple[float, float] | None = None):
    """The query spectrum (black) with its neighbours' spectra; ``query`` is a flux array (a row of
    ``spectra`` or an uploaded spectrum on the same grid); ``names`` are the query's then the rows'.
    ``offset`` shifts each neighbour down by that much flux, ``xrange`` [Å] zooms on a window; lines
    break at detector gaps."""
    axis, (query_flux,) = gapped(wavelength, query)
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=axis, y=query_flux, mode="lines",
                                name=f"{names[0]} (query)", line=dict(color="#000", width=1.6)))
    for i, row in enumerate(rows):
        flux = gapped(wavelength, np.asarray(spectra[int(row)], np.float32) - offset * (i + 1))[1][0]
        figure.add_trace(go.Scatter(x=axis, y=flux, mode="lines", name=names[i + 1], line=dict(width=1),
                                    opacity=0.8))
    figure.update_layout(height=height, template="plotly_white", margin=dict(l=60, r=20, t=30, b=45),
                         xaxis=dict(title=WAVELENGTH_TITLE, showline=True, mirror=True, linecolor="#444",
                                    **({"range": list(xrange)} if xrange else {})),
                         yaxis=dict(title=FLUX_TITLE, showline=True, mirror=True, linecolor="#444"),
                         legend=dict(orientation="v", x=1.01, y=1), meta={"linked": "neighbours"})
    return figure
