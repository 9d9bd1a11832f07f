"""Streamlit widgets shared by several pages. Widgets only: the logic they show (slider ranges,
snapping, extrapolation messages) lives in :mod:`astrocore.app.spectra` and is tested there.
"""
from __future__ import annotations

import streamlit as st

from . import spectra as logic

EXTRAPOLATION_NOTE = "The decoder has never seen such stars; treat the generated spectrum with caution."


def conditional_sliders(training_range: dict[str, tuple[float, float]], own: dict[str, float], *, key: str,
                        star, controls=None, warnings=None, reset_button: bool = True) -> dict[str, float]:
    """One slider per conditional parameter (Teff [K], log g [dex], ...) for the decoder; returns
    their values in physical units.

    ``key`` prefixes the widget keys (``f"{key}{name}"``, e.g. ``cp_teff``); ``own`` holds the
    star's own values and ``star`` identifies the star: when it differs from the previous call's,
    every slider snaps to the star's own value. The sliders span the training range plus a margin
    (values outside the range are allowed and flagged with a warning, in ``warnings`` - a container,
    default the sliders' one). ``reset_button`` adds "Back to the star's own values".
    """
    specs = logic.slider_specs(training_range)
    controls = controls if controls is not None else st.container()
    star_key = f"{key}star"
    snap = st.session_state.get(star_key) != star
    st.session_state[star_key] = star
    for spec in specs:
        name = f"{key}{spec.name}"
        if snap or name not in st.session_state:
            st.session_state[name] = logic.snap(own[spec.name], spec)
        else:  # another model's range may not contain the kept value
            st.session_state[name] = min(max(float(st.session_state[name]), spec.low), spec.high)
    values = {}
    with controls:
        for spec in specs:
            values[spec.name] = st.slider(
                spec.title, min_value=spec.low, max_value=spec.high, step=spec.step, key=f"{key}{spec.name}",
                format=spec.format,
                help=f"Training range {spec.train_low:g} – {spec.train_high:g}; values outside it are "
                     f"extrapolation (allowed, and flagged). This star: {own[spec.name]:g}.")
        if reset_button:  # the callback runs before the rerun, so the sliders are drawn at the star's values
            st.button("Back to the star's own values", icon=":material/restart_alt:", width="stretch",
                      key=f"{key}reset", on_click=_reset, args=(key, specs, own))
    message = logic.extrapolation_message(values, training_range)
    if message:
        (warnings if warnings is not None else controls).warning(
            f"**Extrapolation** — {message}. {EXTRAPOLATION_NOTE}", icon=":material/warning:")
    return values


def _reset(key: str, specs, own: dict[str, float]) -> None:
    for spec in specs:
        st.session_state[f"{key}{spec.name}"] = logic.snap(own[spec.name], spec)
