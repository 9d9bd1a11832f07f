"""The explorer's plotly figures: the embedding scatter (WebGL), a selection's median spectrum
with its 16-84 % band, label histograms and neighbour spectra."""
from __future__ import annotations

import numpy as np
import plotly.colors as pc
import plotly.graph_objects as go

from .explore import COLUMN_TITLES, ExploreData, ExploreError, colour_kind
from .plots import DISPLAY_POINTS, FLUX_TITLE, decimation_index, gapped, plain_ticks, wavelength_title

#: plotly_white, resolved once (a template name is expanded on every figure).
TEMPLATE = "plotly_white"


def embedding_figure(coordinates, colour, colour_name: str, method: str, hover=None, shown: np.ndarray | None = None,
                     selected: np.ndarray | None = None, marked: int | None = None, height: int = 560,
                     title: str = "", revision: int = 0, density=None, window=None):
    """The scatter of the projection. Every trace's ``customdata`` holds full-set row numbers, so
    a selection maps back to the data even when only a subsample is drawn.

    ``selected`` rows are highlighted as plotly highlights a lasso (``selectedpoints``: the other
    points are dimmed); leave it None when the chart's own lasso already shows them (see
    :func:`selection_overlay`). ``revision`` only changes the
    figure's identity (a new value makes Streamlit mount a fresh chart, dropping a stale lasso).
    ``density`` = (x centres, y centres, counts) from :func:`astrocore.app.explore_scale.display_plan`
    is drawn as a grey log-density image under the points (every object, when only a sample of
    them is drawn); ``window`` (x0, x1, y0, y1) sets the axes' ranges.
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
    if density is not None:
        xc, yc, counts = density
        level = np.where(counts > 0, np.log10(np.maximum(counts, 1)) + 0.3, np.nan).astype(np.float32)
        figure.add_trace(go.Heatmap(x=xc, y=yc, z=level, colorscale="Greys", showscale=False, hoverinfo="skip",
                                    zmin=0, zmax=float(np.nanmax(level)) if np.isfinite(level).any() else 1,
                                    name="density of all objects", showlegend=False, opacity=0.7))

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
        figure.data[-1].name = "objects"
        figure.data[-1].showlegend = False
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
            figure.data[-1].name = "objects"
            figure.data[-1].showlegend = False
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
                         legend=dict(orientation="h", yanchor="top", y=-0.12, x=0),
                         uirevision=f"{method}{'' if window is None else window}",
                         meta={"explorer": True, "n": int(n), "shown": len(shown), "revision": int(revision),
                               "highlighted": None if selected is None else len(selected),
                               "density": density is not None})
    if window is not None:
        figure.update_xaxes(range=[window[0], window[1]])
        figure.update_yaxes(range=[window[2], window[3]])
    return figure


# ============================================================================ linked views
MAX_BAND_SPECTRA = 1000


def _quantiles(values: np.ndarray, fractions) -> np.ndarray:
    """Quantiles along axis 0 with linear interpolation (numpy's default method), through one sort
    (several times faster than ``np.percentile`` on (n, 7214) arrays; faster than a partition at
    several order statistics too)."""
    ordered = np.sort(values, axis=0)
    position = np.asarray(fractions, float) * (len(ordered) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(ordered) - 1)
    weight = (position - low)[:, None].astype(ordered.dtype)
    return ordered[low] * (1 - weight) + ordered[high] * weight


def band_statistics(spectra: np.ndarray, index, max_spectra: int | None = MAX_BAND_SPECTRA,
                    seed: int = 0, pixels=None) -> dict[str, np.ndarray]:
    """16th, 50th and 84th percentile of the selected spectra and of the rest: arrays (3, n_pixels)
    (only at ``pixels`` when given).

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
        block = spectra[rows] if pixels is None else spectra[np.ix_(rows, np.asarray(pixels, int))]
        result[name] = _quantiles(block.astype(np.float32, copy=False), [0.16, 0.5, 0.84])
    return result


def display_pixels(wavelength, spectra, max_points: int = DISPLAY_POINTS, seed: int = 0) -> np.ndarray:
    """The pixels a run's band charts are drawn from: all of a short spectrum; for a long one
    (APOGEE's 7214) about ``max_points``, each bin's extremes of the whole set's 16th, 50th and
    84th percentile spectra (lines sit at the same wavelengths in every star, so these pixels keep
    every line of any selection), plus the ends of detector segments. Computed once per run, it
    makes each lasso's statistics 3-4 times cheaper and its chart as many times smaller."""
    wavelength = np.asarray(wavelength, float)
    if len(wavelength) <= max_points:
        return np.arange(len(wavelength))
    whole = band_statistics(spectra, np.arange(0), seed=seed)["rest"]
    step = np.diff(wavelength)
    gaps = np.flatnonzero(step > 5 * np.median(step)) + 1
    return decimation_index(list(whole), max_points, keep=np.concatenate([gaps, gaps - 1]))


AXIS = dict(showline=True, mirror=True, linecolor="#444")


def selection_spectra_figure(wavelength, spectra, index, height: int = 380, pixels=None):
    """Median and 16-84 % band of the selection against the rest. SVG lines (not WebGL): the
    browser draws six lines of a few thousand points faster than it sets up a WebGL context.
    ``pixels``: draw only these (see :func:`display_pixels`; a page computes them once per run);
    the figure is built from plain dicts, lines break at detector gaps."""
    stats = band_statistics(spectra, index, pixels=pixels)
    names = [name for name in ("rest", "selection") if name in stats]
    wavelength = np.asarray(wavelength, float)
    curves = [row for name in names for row in stats[name]]
    if pixels is None:
        wavelength, curves = gapped(wavelength, *curves)
    else:  # NaN at the full grid's detector gaps, so no line or band bridges them
        pixels = np.asarray(pixels, int)
        step = np.diff(wavelength)
        gaps = np.searchsorted(pixels, np.flatnonzero(step > 5 * np.median(step)) + 1)
        wavelength = np.insert(wavelength[pixels], gaps, np.nan).astype(np.float32)
        curves = [np.insert(c.astype(np.float32), gaps, np.nan) for c in curves]
    colours = {"selection": ("#dd6b20", "rgba(221,107,32,0.25)"), "rest": ("#4a5568", "rgba(74,85,104,0.18)")}
    n_sel = len(np.asarray(index))
    data = []
    for i, name in enumerate(names):
        low, median, high = curves[3 * i: 3 * i + 3]
        line, fill = colours[name]
        label = f"selection ({n_sel})" if name == "selection" else f"rest ({len(spectra) - n_sel})"
        data += [dict(type="scatter", x=wavelength, y=high, mode="lines", line=dict(width=0), showlegend=False,
                      hoverinfo="skip", name=f"{name} 84 %"),
                 dict(type="scatter", x=wavelength, y=low, mode="lines", line=dict(width=0), fill="tonexty",
                      fillcolor=fill, name=f"{label} 16–84 %", hoverinfo="skip"),
                 dict(type="scatter", x=wavelength, y=median, mode="lines", line=dict(color=line, width=1.4),
                      name=f"{label} median")]
    layout = dict(height=height, template=TEMPLATE, margin=dict(l=60, r=20, t=30, b=45),
                  xaxis=dict(title=dict(text=wavelength_title(wavelength)), **AXIS), yaxis=dict(title=dict(text=FLUX_TITLE), **AXIS),
                  legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0),
                  meta={"linked": "spectra", "n_selected": n_sel})
    return plain_ticks(go.Figure(data=data, layout=layout, _validate=False))


def histogram_columns(data: ExploreData) -> list[str]:
    return [c for c in ("teff", "logg", "feh", "afe", "recon_error") if c in data.table]


def label_histograms_figure(data: ExploreData, index, columns=None, height: int = 300):
    """One panel per label: the selection's histogram against the whole set (both as fractions).
    Built from plain dicts (no ``make_subplots``): it is redrawn on every lasso."""
    columns = list(columns or histogram_columns(data))
    if not columns:
        raise ExploreError("This run has no numeric labels to histogram.")
    index = np.asarray(index, int)
    spacing = 0.06
    width = (1 - spacing * (len(columns) - 1)) / len(columns)
    data_traces, layout = [], dict(barmode="overlay", height=height, template=TEMPLATE,
                                   margin=dict(l=60, r=20, t=30, b=50), legend=dict(orientation="h", y=1.12, x=0),
                                   meta={"linked": "histograms", "n_selected": len(index)})
    for i, name in enumerate(columns):
        suffix = "" if i == 0 else str(i + 1)
        left = i * (width + spacing)
        layout[f"xaxis{suffix}"] = dict(domain=[left, left + width], anchor=f"y{suffix}",
                                        title=dict(text=COLUMN_TITLES.get(name, name)), **AXIS)
        layout[f"yaxis{suffix}"] = dict(anchor=f"x{suffix}", **AXIS,
                                        **({"title": dict(text="fraction")} if i == 0 else {}))
        values = data.table[name].to_numpy(float)
        finite = values[np.isfinite(values)]
        if not finite.size:
            continue
        edges = np.histogram_bin_edges(finite, bins=min(30, max(5, int(np.sqrt(finite.size)))))
        for label, rows, colour in (("all", slice(None), "#a0aec0"), ("selection", index, "#dd6b20")):
            counts, _ = np.histogram(values[rows], bins=edges, density=False)
            total = max(counts.sum(), 1)
            data_traces.append(dict(type="bar", x=0.5 * (edges[1:] + edges[:-1]), y=counts / total,
                                    width=np.diff(edges), marker=dict(color=colour),
                                    opacity=0.55 if label == "all" else 0.75, name=label, showlegend=i == 0,
                                    legendgroup=label, xaxis=f"x{suffix}", yaxis=f"y{suffix}"))
    return plain_ticks(go.Figure(data=data_traces, layout=layout, _validate=False))  # MSE in 0.0002, not 200µ


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
                         xaxis=dict(title=wavelength_title(wavelength), showline=True, mirror=True, linecolor="#444",
                                    **({"range": list(xrange)} if xrange else {})),
                         yaxis=dict(title=FLUX_TITLE, showline=True, mirror=True, linecolor="#444"),
                         legend=dict(orientation="v", x=1.01, y=1), meta={"linked": "neighbours"})
    return plain_ticks(figure)
