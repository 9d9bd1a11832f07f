"""Plotly figure builders for the app: spectra with a residual panel, loss curves, embeddings, R^2.

Every figure has physical axes ("Wavelength [Å]", "Normalised flux", "Teff [K]", "log g [dex]")
and the diagnostic lines of the spectral range are marked and labelled. Builders take plain numpy
arrays and return ``plotly.graph_objects.Figure`` objects; they never train or load anything, so
they are cheap enough to run on every slider move (the spectrum figure is built from dicts, no
``make_subplots``, and arrays are sent as float32).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.colors as pc
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..data.dataset import LABEL_TITLES

WAVELENGTH_TITLE = "Wavelength [Å]"
FLUX_TITLE = "Normalised flux"
RESIDUAL_TITLE = "Δ flux"

# Colours: a calm palette that stays readable when printed in grey.
COLORS = {
    "original": "#5f6b7a",
    "reconstruction": "#2b6cb0",
    "generated": "#dd6b20",
    "true": "#2f855a",
    "extrapolation": "#c53030",
    "line": "rgba(90, 90, 110, 0.35)",
}

PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d"],
                 "toImageButtonOptions": {"format": "png", "scale": 2}}


# ============================================================================ line lists
@dataclass(frozen=True)
class Line:
    wavelength: float  # Angstrom (air for RVS, vacuum for APOGEE, as in the surveys)
    label: str  # full label, e.g. "Ca II 8542"
    short: str  # compact label for crowded views, e.g. "Ca II"


def air_to_vacuum(wavelength_air):
    """Vacuum wavelength [Å] of an air wavelength [Å] (Morton 2000 / Ciddor refractive index)."""
    wavelength_air = np.asarray(wavelength_air, dtype=float)
    s2 = (1e4 / wavelength_air) ** 2
    n = 1 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2) + 1.599740894897e-4 / (38.92568793293 - s2)
    return wavelength_air * n


def _lines(species: str, wavelengths, short: str | None = None, vacuum: bool = False) -> list[Line]:
    """Lines from their air wavelengths (as line lists quote them); with ``vacuum`` placed and named
    at their vacuum wavelengths (APOGEE spectra are in vacuum), so a label names the wavelength
    where its marker sits on the axis."""
    placed = [float(air_to_vacuum(w)) if vacuum else float(w) for w in wavelengths]
    return [Line(w, f"{species} {w:.0f}", short or species) for w in placed]


#: Gaia RVS-like range (8460-8700 Å, air): the Ca II triplet, Paschen lines of hot stars, Fe I, Si I,
#: Ti I (cool stars), N I (hot stars), Mg I.
RVS_LINES: list[Line] = (
    _lines("Ca II", (8498.02, 8542.09, 8662.14))
    + [Line(8502.5, "P16 8502", "P16"), Line(8545.4, "P15 8545", "P15"), Line(8598.4, "P14 8598", "P14"),
       Line(8665.0, "P13 8665", "P13"), Line(8750.5, "P12 8750", "P12")]
    + _lines("Fe I", (8468.4, 8514.1, 8621.6, 8674.7, 8688.6))
    + _lines("Si I", (8536.2, 8556.8, 8648.5))
    + _lines("Ti I", (8518.4, 8682.98, 8692.3))
    + _lines("N I", (8629.2, 8680.3))
    + _lines("Mg I", (8717.8, 8736.0))
)

#: APOGEE H band (15150-16950 Å, vacuum): Mg I, Si I, Al I, K I, Mn I, Fe I, Ca I, Ti I, Ni I (named by
#: their air wavelengths, drawn at vacuum positions), the Brackett series (vacuum) and CO band heads.
APOGEE_LINES: list[Line] = (
    _lines("Mg I", (15740.7, 15749.0, 15765.8), "Mg", vacuum=True)
    + _lines("Si I", (15888.4, 15960.1, 16060.0, 16094.8, 16215.7, 16380.2, 16680.8), "Si", vacuum=True)
    + _lines("Al I", (16718.9, 16750.6, 16763.4), "Al", vacuum=True)
    + _lines("K I", (15163.1, 15168.4), "K", vacuum=True)
    + _lines("Mn I", (15159.2, 15217.7, 15262.4), "Mn", vacuum=True)
    + _lines("Fe I", (15207.5, 15294.6, 15621.7, 15632.0, 15662.0, 15692.8, 15980.7, 16040.7, 16165.0, 16231.6,
                      16444.8), "Fe", vacuum=True)
    + _lines("Ca I", (16150.8, 16157.4, 16197.1), "Ca", vacuum=True)
    + _lines("Ti I", (15543.8, 15602.8, 15715.6), "Ti", vacuum=True)
    + _lines("Ni I", (15605.7, 16584.4, 16673.7), "Ni", vacuum=True)
    + [Line(16811.1, "Br11 16811", "Br11"), Line(16411.7, "Br12 16412", "Br12"),
       Line(16113.7, "Br13 16114", "Br13"), Line(15884.9, "Br14 15885", "Br14"),
       Line(15704.9, "Br15 15705", "Br15"), Line(15560.7, "Br16 15561", "Br16")]
    + [Line(w, f"CO head {w:.0f}", "CO") for w in (15582.0, 15779.0, 15982.0, 16189.0, 16397.0, 16610.0)]
)

#: Molecular regions of cool giants in the APOGEE band (shaded, not single lines): strong OH
#: doublets (Smith et al. 2013) and a CN-rich stretch of the blue chip. Approximate limits.
APOGEE_BANDS: list[tuple[float, float, str]] = [
    (15389.0, 15416.0, "OH"),
    (15567.0, 15581.0, "OH"),
    (16052.0, 16082.0, "OH"),
    (16190.0, 16214.0, "OH"),
    (15244.0, 15334.0, "CN"),
]

#: Zoom presets: name -> (low, high) in Angstrom, named in the axis' system (air for the RVS-like
#: simulator, vacuum for APOGEE).
RVS_ZOOMS: dict[str, tuple[float, float]] = {
    "Full range": (8460.0, 8700.0),
    "Ca II 8498 + P16": (8485.0, 8515.0),
    "Ca II 8542 + P15": (8525.0, 8562.0),
    "Ca II 8662 + P13": (8645.0, 8680.0),
    "Ca II triplet": (8490.0, 8670.0),
    "Fe I 8621 + P14": (8590.0, 8630.0),
    "Fe I 8675 / 8689": (8668.0, 8696.0),
}
APOGEE_ZOOMS: dict[str, tuple[float, float]] = {
    "Full range": (15140.0, 16960.0),
    "Blue chip": (15140.0, 15810.0),
    "Green chip": (15850.0, 16440.0),
    "Red chip": (16470.0, 16960.0),
    "K I / Mn I / Fe I 15164-15274": (15150.0, 15272.0),
    "CN region 15240-15330": (15235.0, 15335.0),
    "OH 15390-15410 + Fe I": (15380.0, 15420.0),
    "Br16 + OH 15568": (15550.0, 15582.0),
    "Mg I 15744-15770": (15736.0, 15780.0),
    "Br14 + Si I 15893": (15876.0, 15900.0),
    "Si I 15964 + Fe I 15985": (15954.0, 15990.0),
    "Si I 16064 + OH 16052-16078": (16048.0, 16086.0),
    "Si I 16099 + Br13 16114": (16090.0, 16124.0),
    "Ca I 16154-16201": (16145.0, 16210.0),
    "Br12 16412": (16395.0, 16428.0),
    "Al I 16724-16768": (16712.0, 16776.0),
    "Br11 16811": (16795.0, 16828.0),
}


def survey_of(wavelength) -> str | None:
    """'rvs' or 'apogee' when the wavelength axis lies in that range, else None."""
    wavelength = np.asarray(wavelength)
    low, high = float(wavelength[0]), float(wavelength[-1])
    if low < 8700 and high > 8460 and high < 9500:
        return "rvs"
    if low < 16960 and high > 15140 and low > 14000:
        return "apogee"
    return None


#: The wavelength system of each simulated survey's axis: the RVS-like simulator works in air,
#: APOGEE and SDSS spectra are in vacuum.
MEDIUM = {"rvs": "air", "apogee": "vacuum", "sdss": "vacuum"}


def wavelength_title(wavelength) -> str:
    """The wavelength axis title, saying vacuum or air when the axis is a known survey's:
    "Wavelength in vacuum [Å]"; plain "Wavelength [Å]" otherwise."""
    wavelength = np.asarray(wavelength, dtype=float)
    survey = survey_of(wavelength)
    if survey is None and len(wavelength) and np.nanmin(wavelength) < 4500 and np.nanmax(wavelength) > 8000:
        survey = "sdss"  # the optical 3800-9200 Å range of SDSS and the BHB simulator
    medium = MEDIUM.get(survey or "")
    return f"Wavelength in {medium} [Å]" if medium else WAVELENGTH_TITLE


def lines_for(wavelength) -> list[Line]:
    survey = survey_of(wavelength)
    lines = RVS_LINES if survey == "rvs" else APOGEE_LINES if survey == "apogee" else []
    low, high = float(np.min(wavelength)), float(np.max(wavelength))
    return sorted((line for line in lines if low <= line.wavelength <= high), key=lambda line: line.wavelength)


def bands_for(wavelength) -> list[tuple[float, float, str]]:
    if survey_of(wavelength) != "apogee":
        return []
    low, high = float(np.min(wavelength)), float(np.max(wavelength))
    return [band for band in APOGEE_BANDS if band[1] >= low and band[0] <= high]


def default_zoom(wavelength) -> str:
    """The zoom a first look should use: the Ca II triplet range for RVS, the Mg I triplet for APOGEE
    (the full H band has too many lines to read generated against true spectra)."""
    presets = zoom_presets(wavelength)
    if survey_of(wavelength) == "apogee" and "Mg I 15744-15770" in presets:
        return "Mg I 15744-15770"
    return "Full range"


def zoom_presets(wavelength) -> dict[str, tuple[float, float]]:
    """Zoom presets that overlap ``wavelength``; always starts with "Full range" (the data's range)."""
    low, high = float(np.min(wavelength)), float(np.max(wavelength))
    survey = survey_of(wavelength)
    presets = RVS_ZOOMS if survey == "rvs" else APOGEE_ZOOMS if survey == "apogee" else {}
    result = {"Full range": (low, high)}
    for name, (a, b) in presets.items():
        if name != "Full range" and b > low and a < high:
            result[name] = (max(a, low), min(b, high))
    return result


# ============================================================================ helpers
def plain_ticks(figure: go.Figure) -> go.Figure:
    """Plain numbers on every axis of ``figure`` (returned): plotly's defaults print "15.2k" and
    "500µ", which read as units on wavelength and flux axes, and "15,200" for a wavelength."""
    figure.update_xaxes(exponentformat="none")
    figure.update_yaxes(exponentformat="none")
    figure.update_layout(separators=".")
    return figure


#: Pixels per trace of a full-range spectrum sent to the browser (about two per pixel of a wide chart).
DISPLAY_POINTS = 2000


def decimation_index(fluxes, max_points: int = DISPLAY_POINTS, keep=()) -> np.ndarray:
    """Sorted pixel numbers that draw ``fluxes`` (arrays of one length) with at most about
    ``max_points`` points: the pixels are cut into equal bins and each bin keeps the pixels of each
    flux's minimum and maximum (so every line keeps its depth and every spike its height), plus the
    ``keep`` pixels (e.g. the ends of detector segments). All of them when they are few already."""
    fluxes = [np.asarray(f, dtype=np.float32) for f in fluxes if f is not None]
    n = len(fluxes[0]) if fluxes else 0
    if n <= max_points or not fluxes:
        return np.arange(n)
    n_bins = max(1, int(max_points) // (2 * len(fluxes)))
    width = -(-n // n_bins)
    chosen = [np.asarray(keep, int), np.array([0, n - 1])]
    offsets = np.arange(n_bins) * width
    for flux in fluxes:
        padded = np.full(n_bins * width, np.nan, np.float32)
        padded[:n] = flux
        finite = np.isfinite(padded).reshape(n_bins, width)
        blocks = padded.reshape(n_bins, width)
        has = finite.any(axis=1)
        low = np.where(finite, blocks, np.inf).argmin(axis=1)
        high = np.where(finite, blocks, -np.inf).argmax(axis=1)
        chosen += [(offsets + low)[has], (offsets + high)[has]]
    index = np.unique(np.concatenate(chosen))
    return index[(index >= 0) & (index < n)]


def gapped(wavelength: np.ndarray, *fluxes, max_points: int | None = None, pixels: bool = False):
    """float32 copies with NaN inserted at detector gaps (steps > 5x the median), so lines do not
    bridge the APOGEE chip gaps. With ``max_points`` a longer spectrum is decimated first (see
    :func:`decimation_index`: each bin's minimum and maximum are kept; the gaps are those of the full grid).
    With ``pixels`` also returns, third, the pixel number of each output point (-1 at the gaps), which
    is how the browser's own decoder fills a trace drawn from these points (``astrocore.app.live``)."""
    wavelength = np.asarray(wavelength, dtype=np.float64)
    step = np.diff(wavelength)
    gaps = np.flatnonzero(step > 5 * np.median(step)) + 1 if step.size > 2 else np.array([], int)
    index = np.arange(len(wavelength))
    if max_points and len(wavelength) > max_points:
        index = decimation_index(fluxes, max_points, keep=np.concatenate([gaps, gaps - 1]))
        wavelength = wavelength[index]
        fluxes = tuple(None if f is None else np.asarray(f)[index] for f in fluxes)
        gaps = np.searchsorted(index, gaps)
    out_wl = np.insert(wavelength, gaps, np.nan).astype(np.float32)
    out = [None if f is None else np.insert(np.asarray(f, dtype=np.float64), gaps, np.nan).astype(np.float32)
           for f in fluxes]
    if pixels:
        return out_wl, out, np.insert(index, gaps, -1).astype(np.int32)
    return out_wl, out


def _line_decorations(lines: list[Line], bands, xrange: tuple[float, float], width_px: int = 1000,
                      yref: str = "y domain", labels: bool = True):
    """Vertical dotted line shapes, shaded molecular bands and de-cluttered labels within xrange."""
    low, high = xrange
    span = max(high - low, 1e-9)
    visible = [line for line in lines if low <= line.wavelength <= high]
    compact = span > 150  # full-range views: short species labels
    shapes, annotations = [], []
    for a, b, name in bands:
        if b < low or a > high:
            continue
        shapes.append(dict(type="rect", xref="x", yref=yref, x0=max(a, low), x1=min(b, high), y0=0, y1=1,
                           fillcolor="rgba(128, 90, 213, 0.07)", line=dict(width=0), layer="below"))
        annotations.append(dict(x=(max(a, low) + min(b, high)) / 2, y=0.02, xref="x", yref=yref, text=name,
                                showarrow=False, font=dict(size=10, color="rgba(107, 70, 193, 0.9)"),
                                yanchor="bottom"))
    min_gap = span * 14 / width_px  # a label needs ~14 px of horizontal room (text is vertical)
    last_labelled = -np.inf
    for line in visible:
        shapes.append(dict(type="line", xref="x", yref=yref, x0=line.wavelength, x1=line.wavelength, y0=0,
                           y1=1, line=dict(color=COLORS["line"], width=1, dash="dot"), layer="below"))
        if labels and line.wavelength - last_labelled >= min_gap:
            annotations.append(dict(x=line.wavelength, y=1.0, xref="x", yref=yref,
                                    text=line.short if compact else line.label, showarrow=False,
                                    textangle=-90, yanchor="top", xanchor="center",
                                    font=dict(size=10, color="#4a5568"), bgcolor="rgba(255,255,255,0.7)"))
            last_labelled = line.wavelength
    return shapes, annotations


# ============================================================================ spectra
def spectrum_figure(wavelength, traces: dict[str, np.ndarray | None], residuals: dict[str, np.ndarray] | None = None,
                    xrange: tuple[float, float] | None = None, title: str = "", extrapolation: bool = False,
                    meta: dict | None = None, uirevision: str = "spectrum", height: int = 560,
                    show_lines: bool = True, crop: bool = True, decimate: bool = True) -> go.Figure:
    """Spectra overlaid in a top panel and residuals below, sharing the wavelength axis.

    ``traces`` maps a legend name to flux; names starting with "Original", "Reconstruction",
    "Generated", "True" get the standard colours and styles (None values are skipped).
    ``residuals`` maps a legend name to a flux difference for the lower panel. With ``crop`` only
    the pixels around ``xrange`` (one window width on each side) are sent to the browser, which
    keeps a slider move on a zoomed APOGEE view to a few hundred points instead of 7214 per trace;
    with ``decimate`` a longer stretch is sent as about :data:`DISPLAY_POINTS` points per trace
    (each bin's minimum and maximum, so no line loses its depth).
    """
    wavelength, traces, residuals, names, residual_names, wl, fluxes, _ = _display_points(
        wavelength, traces, residuals, xrange, crop, decimate)
    xrange = xrange or (float(wavelength[0]), float(wavelength[-1]))
    data = []
    for name, flux in zip(names, fluxes[:len(names)]):
        style = _style(name, extrapolation)
        data.append(dict(type="scatter", x=wl, y=flux, name=name, mode="lines", line=style,
                         hovertemplate="%{x:.2f} Å<br>%{y:.4f}<extra>" + name + "</extra>"))
    for name, flux in zip(residual_names, fluxes[len(names):]):
        style = _style(name, extrapolation)
        style["width"] = 1.2
        data.append(dict(type="scatter", x=wl, y=flux, name=name, mode="lines", line=style, xaxis="x",
                         yaxis="y2", showlegend=False,
                         hovertemplate="%{x:.2f} Å<br>%{y:.4f}<extra>" + name + "</extra>"))
    has_residuals = bool(residual_names)
    top_domain = [0.3, 1.0] if has_residuals else [0.0, 1.0]
    shapes, annotations = ([], [])
    if show_lines:
        shapes, annotations = _line_decorations(lines_for(wavelength), bands_for(wavelength), xrange)
    if has_residuals:
        shapes.append(dict(type="line", xref="x", yref="y2", x0=xrange[0], x1=xrange[1], y0=0, y1=0,
                           line=dict(color="rgba(0,0,0,0.35)", width=1)))
    if extrapolation:
        title = (title + "  " if title else "") + (
            f"<span style='color:{COLORS['extrapolation']}'>⚠ extrapolation</span>")
    visible = (wavelength >= xrange[0]) & (wavelength <= xrange[1])
    y_range = _y_range([traces[n] for n in names], visible)
    layout = dict(
        title=dict(text=title, x=0.0, xanchor="left", y=0.99, yanchor="top", yref="container",
                   font=dict(size=15)) if title else None,
        height=height, margin=dict(l=70, r=20, t=72 if title else 40, b=55),
        hovermode="x unified", uirevision=uirevision, template="plotly_white",
        legend=dict(orientation="h", yanchor="bottom", y=1.03, xanchor="left", x=0.0, font=dict(size=12)),
        xaxis=dict(title=dict(text=wavelength_title(wavelength)) if not has_residuals else None, range=list(xrange),
                   showticklabels=not has_residuals, anchor="y",
                   ticks="outside", showline=True, mirror=True, linecolor="#444",
                   tickformat=".0f" if xrange[1] - xrange[0] > 20 else ".1f"),
        yaxis=dict(title=dict(text=FLUX_TITLE), domain=top_domain, range=y_range, ticks="outside",
                   showline=True, mirror=True, linecolor="#444", zeroline=False),
        shapes=shapes, annotations=annotations, meta=meta or {},
    )
    if has_residuals:
        resid = [residuals[n] for n in residual_names]
        limit = _residual_limit(resid, visible)
        layout["xaxis"].update(showticklabels=False, matches="x2")
        layout["xaxis2"] = dict(title=dict(text=wavelength_title(wavelength)), anchor="y2", range=list(xrange),
                                ticks="outside", showline=True, mirror=True, linecolor="#444",
                                tickformat=layout["xaxis"]["tickformat"])
        residual_title = residual_names[0] if len(residual_names) == 1 else RESIDUAL_TITLE
        layout["yaxis2"] = dict(title=dict(text=residual_title, font=dict(size=12)), domain=[0.0, 0.24],
                                range=[-limit, limit],
                                ticks="outside", showline=True, mirror=True, linecolor="#444", zeroline=False)
        for trace in data:
            if trace.get("yaxis") == "y2":
                trace["xaxis"] = "x2"
    # Built from plain dicts whose keys are fixed above: skipping plotly's per-property validation
    # saves ~10 ms per slider move (a third of the server time).
    return plain_ticks(go.Figure(data=data, layout=layout, _validate=False))


def _display_points(wavelength, traces, residuals, xrange, crop: bool, decimate: bool):
    """What :func:`spectrum_figure` sends: the pixels around ``xrange`` (with ``crop``), decimated
    (with ``decimate``) and gapped; also the pixel number of every point (-1 at gaps)."""
    wavelength = np.asarray(wavelength, dtype=np.float64)
    xrange = xrange or (float(wavelength[0]), float(wavelength[-1]))
    first = 0
    if crop and (xrange[0] > wavelength[0] or xrange[1] < wavelength[-1]):
        pad = max(xrange[1] - xrange[0], 20.0)
        keep = (wavelength >= xrange[0] - pad) & (wavelength <= xrange[1] + pad)
        if keep.sum() >= 2:
            first = int(np.flatnonzero(keep)[0])  # the wavelengths are sorted: the kept pixels are one run
            wavelength = wavelength[keep]
            traces = {name: None if flux is None else np.asarray(flux)[keep] for name, flux in traces.items()}
            residuals = {name: None if flux is None else np.asarray(flux)[keep]
                         for name, flux in (residuals or {}).items()}
    names = [name for name, flux in traces.items() if flux is not None]
    residual_names = [name for name, flux in (residuals or {}).items() if flux is not None]
    # A wide view (e.g. APOGEE's full 7214 pixels) is sent decimated: each bin's extremes of every
    # trace, about DISPLAY_POINTS points a trace (a 1000-px chart cannot show more); a zoom preset
    # crops to the window above and is sent at full resolution.
    wl, fluxes, pixels = gapped(wavelength, *[traces[n] for n in names], *[residuals[n] for n in residual_names],
                                max_points=DISPLAY_POINTS if decimate else None, pixels=True)
    pixels = np.where(pixels >= 0, pixels + first, -1).astype(np.int32)
    return wavelength, traces, residuals, names, residual_names, wl, fluxes, pixels


def spectrum_pixels(wavelength, traces: dict[str, np.ndarray | None], residuals: dict[str, np.ndarray] | None = None,
                    xrange: tuple[float, float] | None = None, crop: bool = True, decimate: bool = True) -> np.ndarray:
    """The pixel number (of the full spectrum) of every point :func:`spectrum_figure` draws for these
    arguments, -1 at detector gaps: a trace recomputed in the browser is ``flux[pixels]``."""
    return _display_points(wavelength, traces, residuals, xrange, crop, decimate)[-1]


def _style(name: str, extrapolation: bool = False) -> dict:
    lowered = name.lower()
    if lowered.startswith("original"):
        return dict(color=COLORS["original"], width=1.3)
    if lowered.startswith("recon"):
        return dict(color=COLORS["reconstruction"], width=1.3, dash="dot")
    if lowered.startswith("true"):
        return dict(color=COLORS["true"], width=1.6, dash="dash")
    if lowered.startswith(("gen", "decoded")):
        return dict(color=COLORS["extrapolation"] if extrapolation else COLORS["generated"], width=2.0)
    return dict(width=1.3)


def _y_range(fluxes, visible) -> list[float]:
    values = [np.asarray(f)[visible] for f in fluxes if f is not None and np.any(visible)]
    if not values:
        return [0.0, 1.2]
    low = float(min(np.nanmin(v) for v in values))
    high = float(max(np.nanmax(v) for v in values))
    pad = 0.06 * max(high - low, 0.05)
    return [low - pad, high + pad + 0.12 * max(high - low, 0.05)]  # headroom for line labels


def _residual_limit(residuals, visible) -> float:
    values = [np.abs(np.asarray(r)[visible]) for r in residuals if r is not None and np.any(visible)]
    if not values:
        return 0.05
    return float(max(0.01, 1.15 * max(np.nanpercentile(v, 99.5) for v in values)))


def example_spectra_figure(wavelength, spectra, names, offset: float = 0.6, height: int = 420) -> go.Figure:
    """A few spectra stacked with a vertical offset (for "what was loaded")."""
    spectra = np.atleast_2d(spectra)
    wl, fluxes = gapped(wavelength, *[spectra[i] + offset * i for i in range(len(spectra))])
    palette = ["#2b6cb0", "#dd6b20", "#2f855a", "#805ad5", "#b83280", "#319795"]
    data = [dict(type="scatter", x=wl, y=flux, name=name, mode="lines",
                 line=dict(width=1.1, color=palette[i % len(palette)]))
            for i, (flux, name) in enumerate(zip(fluxes, names))]
    wavelength = np.asarray(wavelength)
    shapes, annotations = _line_decorations(lines_for(wavelength), bands_for(wavelength),
                                            (float(wavelength[0]), float(wavelength[-1])))
    layout = dict(height=height, template="plotly_white", margin=dict(l=70, r=20, t=30, b=50),
                  xaxis=dict(title=dict(text=wavelength_title(wavelength)), showline=True, mirror=True, linecolor="#444"),
                  yaxis=dict(title=dict(text=f"{FLUX_TITLE} (+ offset)"), showline=True, mirror=True,
                             linecolor="#444"),
                  legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0), shapes=shapes,
                  annotations=annotations, hovermode="x unified")
    return plain_ticks(go.Figure(data=data, layout=layout))


def grid_figure(wavelength, spectra, values, value_title: str, xrange=None, offset: float = 0.0,
                height: int = 460) -> go.Figure:
    """Spectra of one star across a parameter (e.g. Teff at fixed log g), coloured by that parameter."""
    spectra = np.atleast_2d(spectra)
    values = np.asarray(values, dtype=float)
    span = max(float(values.max() - values.min()), 1e-9)
    scale = pc.get_colorscale("RdYlBu")
    wl, fluxes = gapped(wavelength, *[spectra[i] + offset * i for i in range(len(spectra))])
    data = []
    for flux, value in zip(fluxes, values):
        colour = pc.sample_colorscale(scale, [(value - values.min()) / span])[0]
        data.append(dict(type="scatter", x=wl, y=flux, mode="lines", name=f"{value:g}",
                         line=dict(width=1.1, color=colour)))
    wavelength = np.asarray(wavelength)
    xrange = xrange or (float(wavelength[0]), float(wavelength[-1]))
    shapes, annotations = _line_decorations(lines_for(wavelength), bands_for(wavelength), xrange)
    layout = dict(height=height, template="plotly_white", margin=dict(l=70, r=20, t=30, b=50),
                  xaxis=dict(title=dict(text=wavelength_title(wavelength)), range=list(xrange), showline=True, mirror=True,
                             linecolor="#444"),
                  yaxis=dict(title=dict(text=FLUX_TITLE), showline=True, mirror=True, linecolor="#444"),
                  legend=dict(title=dict(text=value_title)), shapes=shapes, annotations=annotations)
    return plain_ticks(go.Figure(data=data, layout=layout))


# ============================================================================ training
def loss_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], chance: dict[str, float] | None = None,
                height: int = 320, title: str = "") -> go.Figure:
    """Loss curves: reconstruction (left, log scale) and each adversary (right) against epoch.

    ``curves`` maps a name ("train recon", "val recon", "adversary teff", ...) to (epoch, value).
    Names containing "adv" go to the right panel, where ``chance`` draws each adversary's
    constant-guess level (an adversary at chance means the latent holds no trace of that parameter).
    """
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Reconstruction", "Adversaries (higher = less leakage)"),
                           horizontal_spacing=0.1)
    palette = ["#2b6cb0", "#dd6b20", "#2f855a", "#805ad5", "#b83280", "#319795", "#975a16"]
    for index, (name, (x, y)) in enumerate(curves.items()):
        column = 2 if "adv" in name else 1
        validation = name.startswith("val")
        figure.add_trace(go.Scatter(x=np.asarray(x, float), y=np.asarray(y, float), name=name,
                                    mode="lines+markers" if validation else "lines",
                                    line=dict(color=palette[index % len(palette)], width=2 if validation else 1.2,
                                              dash="dash" if validation else None),
                                    marker=dict(size=5)), row=1, col=column)
    for name, level in (chance or {}).items():
        figure.add_hline(y=level, line=dict(color="rgba(0,0,0,0.4)", dash="dot", width=1), row=1, col=2,
                         annotation_text=f"chance ({name})", annotation_position="bottom right",
                         annotation_font_size=10)
    figure.update_xaxes(title_text="Epoch", showline=True, mirror=True, linecolor="#444")
    recon = [np.asarray(y, float) for name, (_, y) in curves.items() if "adv" not in name and len(y)]
    ticks = _log_ticks(np.concatenate(recon)) if recon else None
    figure.update_yaxes(title_text="MSE (scaled flux)", type="log", exponentformat="power", row=1, col=1, showline=True, mirror=True,
                        linecolor="#444", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks] if ticks else None)
    figure.update_yaxes(title_text="Adversary loss", row=1, col=2, showline=True, mirror=True, linecolor="#444")
    figure.update_layout(height=height + 40, template="plotly_white",
                         margin=dict(l=60, r=20, t=50 if not title else 70, b=90),
                         legend=dict(orientation="h", yanchor="top", y=-0.22, x=0),
                         title=dict(text=title) if title else None)
    return figure


def _log_ticks(values) -> list[float] | None:
    """1-2-5 ticks covering ``values`` (positive) for a log axis, labelled as plain numbers."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return None
    low, high = np.floor(np.log10(values.min())), np.ceil(np.log10(values.max()))
    ticks = [m * 10.0 ** e for e in np.arange(low, high + 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if values.min() / 1.5 <= t <= values.max() * 1.5]
    return ticks or None


def compare_losses_figure(series: dict[str, tuple[np.ndarray, np.ndarray]], metric_title: str,
                          height: int = 340) -> go.Figure:
    """One curve per run (e.g. validation reconstruction against epoch) for the Runs page."""
    figure = go.Figure()
    for name, (x, y) in series.items():
        figure.add_trace(go.Scatter(x=np.asarray(x, float), y=np.asarray(y, float), name=name, mode="lines+markers",
                                    marker=dict(size=4)))
    values = [np.asarray(y, float) for _, y in series.values() if len(y)]
    ticks = _log_ticks(np.concatenate(values)) if values else None
    figure.update_layout(height=height, template="plotly_white", margin=dict(l=60, r=20, t=30, b=45),
                         xaxis=dict(title="Epoch", showline=True, mirror=True, linecolor="#444"),
                         yaxis=dict(title=metric_title, type="log", exponentformat="power", showline=True, mirror=True, linecolor="#444",
                                    tickvals=ticks, ticktext=[f"{t:g}" for t in ticks] if ticks else None),
                         legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    return figure


# ============================================================================ embeddings
def embedding_figure(coordinates, color, color_name: str, method: str, hover: list[str] | None = None,
                     selected: int | None = None, categorical: bool = False, height: int = 480,
                     title: str = "") -> go.Figure:
    """2-d embedding coloured by a label; point ``i`` carries ``customdata = i`` for selection."""
    coordinates = np.asarray(coordinates, dtype=np.float32)
    color = np.asarray(color)
    n = len(coordinates)
    trace_type = "scattergl" if n > 4000 else "scatter"
    numeric = color.dtype.kind in "fiu" and not categorical
    marker = dict(size=5 if n > 2000 else 7, opacity=0.85, line=dict(width=0))
    if numeric:
        # Teff: hot = blue, cool = red, as on a colour-magnitude diagram.
        marker.update(color=color.astype(np.float32), colorscale="RdYlBu" if color_name == "teff" else "Viridis",
                      showscale=True,
                      colorbar=dict(title=dict(text=LABEL_TITLES.get(color_name, color_name)), thickness=14))
    else:
        codes, uniques = _codes(color)
        marker.update(color=codes, colorscale="Turbo", showscale=len(uniques) <= 1 or len(uniques) > 12,
                      colorbar=dict(title=dict(text=color_name), thickness=14))
    data = [dict(type=trace_type, x=coordinates[:, 0], y=coordinates[:, 1], mode="markers", marker=marker,
                 customdata=np.arange(n), text=hover, name="objects",
                 hovertemplate="%{text}<extra></extra>" if hover is not None else None, showlegend=False)]
    if not numeric:
        codes, uniques = _codes(color)
        if len(uniques) <= 12:
            data = []

            palette = pc.qualitative.Safe
            for code, value in enumerate(uniques):
                mask = codes == code
                index = np.flatnonzero(mask)
                data.append(dict(type=trace_type, x=coordinates[mask, 0], y=coordinates[mask, 1], mode="markers",
                                 marker=dict(size=marker["size"], opacity=0.85, color=palette[code % len(palette)]),
                                 customdata=index, name=str(value),
                                 text=None if hover is None else [hover[i] for i in index],
                                 hovertemplate="%{text}<extra></extra>" if hover is not None else None))
    if selected is not None and 0 <= selected < n:
        data.append(dict(type="scatter", x=[coordinates[selected, 0]], y=[coordinates[selected, 1]],
                         mode="markers", name="selected star", customdata=[selected], showlegend=False,
                         marker=dict(symbol="star", size=18, color="#000", line=dict(color="#fff", width=1.5)),
                         hoverinfo="skip"))
    axis = {"pca": "PC", "umap": "UMAP", "tsne": "t-SNE"}.get(method, method)
    layout = dict(height=height, template="plotly_white", margin=dict(l=50, r=20, t=40 if title else 20, b=45),
                  xaxis=dict(title=f"{axis} 1", showline=True, mirror=True, linecolor="#444", zeroline=False),
                  yaxis=dict(title=f"{axis} 2", showline=True, mirror=True, linecolor="#444", zeroline=False),
                  legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0), dragmode="pan",
                  title=dict(text=title) if title else None, clickmode="event+select")
    return go.Figure(data=data, layout=layout)


def _codes(values) -> tuple[np.ndarray, list]:
    uniques, codes = np.unique(np.asarray(values).astype(str), return_inverse=True)
    return codes.ravel(), list(uniques)


# ============================================================================ evaluation
def r2_figure(table, height: int = 360) -> go.Figure:
    """Grouped bars of R^2 per label: this app's representations beside the paper's (hatched).

    ``table`` is the DataFrame from :func:`astrocore.app_logic.r2_comparison` (index: label,
    columns: representation names, paper columns prefixed "paper ").
    """
    figure = go.Figure()
    ours = [c for c in table.columns if not str(c).startswith("paper ")]
    palette = {"X": "#5f6b7a", "noAT": "#2b6cb0", "AT": "#805ad5", "mdAT": "#dd6b20"}
    for column in ours:
        base = str(column).split(" ")[0]
        figure.add_trace(go.Bar(x=list(table.index), y=table[column], name=str(column),
                                marker=dict(color=palette.get(base, "#319795"))))
        paper = f"paper {base}"
        if paper in table.columns and table[paper].notna().any():
            figure.add_trace(go.Bar(x=list(table.index), y=table[paper], name=f"{paper} (Santoveña+24)",
                                    marker=dict(color="rgba(0,0,0,0)", line=dict(color=palette.get(base, "#319795"), width=2),
                                                pattern=dict(shape="/", fgcolor=palette.get(base, "#319795")))))
    figure.update_layout(barmode="group", height=height, template="plotly_white",
                         margin=dict(l=60, r=20, t=30, b=45),
                         yaxis=dict(title="R² of an MLP probe", range=[0, 1.05], showline=True, mirror=True,
                                    linecolor="#444"),
                         legend=dict(orientation="h", yanchor="top", y=-0.15, x=0))
    return figure


def recon_by_parameter_figure(table, height: int = 340) -> go.Figure:
    """Held-out reconstruction MSE (log scale) across bins of a conditional parameter, one line per
    run. ``table`` is :func:`astrocore.app_logic.recon_by_parameter_table`."""
    figure = go.Figure()
    parameter = str(table["parameter"].iloc[0]) if len(table) else ""
    for run_name, rows in table.groupby("run", sort=False):
        centre = (rows["low"] + rows["high"]) / 2
        figure.add_trace(go.Scatter(
            x=centre, y=rows["recon MSE"], mode="lines+markers", name=str(run_name),
            customdata=np.stack([rows["bin"], rows["count"]], axis=1),
            hovertemplate="%{customdata[0]}: MSE %{y:.3g} (%{customdata[1]} spectra)<extra></extra>"))
    figure.update_layout(height=height, template="plotly_white", margin=dict(l=70, r=20, t=20, b=45),
                         xaxis=dict(title=LABEL_TITLES.get(parameter, parameter), showline=True, mirror=True,
                                    linecolor="#444"),
                         yaxis=dict(title="reconstruction MSE (normalised flux)", type="log", exponentformat="power", showline=True, mirror=True,
                                    linecolor="#444"),
                         legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    return figure
