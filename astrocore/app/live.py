"""The live views' Streamlit side: one custom component (components v1, an iframe) whose
hand-written page is ``live_static/`` (see ``live.js``), served from a cache folder together with the
installed plotly package's ``plotly.min.js`` (never copied into the repository) and the decoders'
weight files, which the browser fetches once per run.

Also the logic between the component and the page (plain functions, tested): the sliders' specs and
values as the component gets them, and which values the server draws once a move settles.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import plotly
import plotly.io as pio
import streamlit as st
from streamlit.components import v1 as components

from ..data.cache import cache_dir
from ..data.dataset import LABEL_UNITS
from ..data.names import label_title
from . import live_decoder
from .spectra import SliderSpec, snap

STATIC = Path(__file__).with_name("live_static")
STATIC_FILES = ("index.html", "live.js", "live.css")
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
GENERATE_KEY = "live_generate"


# ---------------------------------------------------------------------------- the served folder
def served_dir() -> Path:
    """``<cache>/live/<digest>/``: the component's page, plotly.min.js and ``decoders/``. The digest
    covers the page's files and plotly's version, so an upgrade gets a fresh folder (and URLs)."""
    digest = hashlib.sha256(plotly.__version__.encode())
    for name in STATIC_FILES:
        digest.update((STATIC / name).read_bytes())
    folder = cache_dir() / "live" / digest.hexdigest()[:16]
    if not (folder / "index.html").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent))
        shutil.copyfile(PLOTLY_JS, staging / "plotly.min.js")
        for name in STATIC_FILES:
            shutil.copyfile(STATIC / name, staging / name)
        (staging / "decoders").mkdir()
        try:
            staging.rename(folder)
        except OSError:  # another process made it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def write_decoder(model, name: str) -> str:
    """Write ``model``'s decoder file as ``decoders/<name>.bin`` (once) and return its URL relative
    to the component's page. Raises :class:`live_decoder.UnsupportedDecoder`."""
    path = served_dir() / "decoders" / f"{name}.bin"
    if not path.exists():
        blob = live_decoder.decoder_file(model)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(handle, "wb") as out:
            out.write(blob)
        os.replace(temporary, path)
    return f"decoders/{path.name}"


@st.cache_resource(max_entries=16, show_spinner=False)
def decoder_url(run_path: str, stamp: float, served: str, _model) -> str:
    """The URL of the decoder file of the run at ``run_path`` (cached per run, stamp and folder)."""
    name = hashlib.sha256(f"{run_path}|{stamp}".encode()).hexdigest()[:20]
    return write_decoder(_model, name)


def _component():
    folder = served_dir()  # registered on every call: the cache folder can change (tests)
    return components.declare_component("live", path=str(folder))


def live_component(kind: str, key: str, height: int, **args):
    """Draw the live view ``kind`` ("generate" or "scatter") with JSON ``args``; returns the last
    value it reported (None before the first)."""
    return _component()(kind=kind, key=key, default=None, height=height, **args)


# ---------------------------------------------------------------------------- generate view logic
def slider_args(specs: list[SliderSpec], own: dict[str, float]) -> list[dict]:
    """What the component needs of each slider (physical units; names, units, ranges, help)."""
    return [{"name": s.name, "title": s.title, "short": label_title(s.name, unit=False),
             "unit": LABEL_UNITS.get(s.name, ""), "low": s.low, "high": s.high, "step": s.step,
             "train_low": s.train_low, "train_high": s.train_high, "format": s.format,
             "help": f"Training range {s.train_low:g} – {s.train_high:g}; values outside it are extrapolation "
                     f"(allowed, and flagged). This star: {own[s.name]:g}."} for s in specs]


def settled_values(state, prefix: str, specs: list[SliderSpec], own: dict[str, float], star: str,
                   reported) -> dict[str, float]:
    """The slider values the server draws now, kept in ``state`` (session state) as
    ``f"{prefix}{name}"``: the star's own values (snapped to the slider steps) when ``star`` differs
    from the last call's, else the component's ``reported`` values when they are a new report about
    this star, else the values kept. Always clipped to the sliders' ranges."""
    values = {}
    if state.get(f"{prefix}star") != star:
        state[f"{prefix}star"] = star
        values = {s.name: snap(own[s.name], s) for s in specs}
    else:
        report = reported if isinstance(reported, dict) else {}
        stamp = [report.get("id"), report.get("seq")]
        new = report.get("star") == star and stamp != state.get(f"{prefix}report") and isinstance(report.get("values"), dict)
        if new:
            state[f"{prefix}report"] = stamp
        for s in specs:
            value = report["values"].get(s.name) if new else None
            if value is None:
                value = state.get(f"{prefix}{s.name}", snap(own[s.name], s))
            values[s.name] = min(max(float(value), s.low), s.high)
    for name, value in values.items():
        state[f"{prefix}{name}"] = value
    return values


def figure_json(figure) -> dict:
    """A plotly figure as the JSON the component draws (arrays as plotly's base64 typed arrays)."""
    return json.loads(pio.to_json(figure, validate=False, engine="json"))
