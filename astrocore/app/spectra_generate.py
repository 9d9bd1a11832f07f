"""The Spectra page's Generate tab: pick a star, slide Teff and log g through the decoder, grids."""
import json

import streamlit as st

from ..data.dataset import LABEL_TITLES, DataError
from . import common as app_common
from . import live, live_decoder
from . import plots
from . import spectra as app_spectra
from . import uploads
from .spectra_state import (SHOW, clicked_star, get_dataset, get_renderer, get_run, hover_texts, latent_limits,
                            pca_coordinates, reset_star_state, star_latent, true_flux)
from .widgets import EXTRAPOLATION_NOTE, conditional_sliders


# ---------------------------------------------------------------------------- Generate
def generate_tab(run, record, default_settings: dict | None = None) -> None:
    """Pick a star and slide its Teff and log g through the decoder of ``run`` (its ``record``)."""
    if run is None:
        st.info("The Generate view opens as soon as a model is ready.")
        return
    own_json = app_common.source_to_json(record.data)
    sources = {"the model's training data": own_json}
    sample = app_spectra.sample_source(record)
    if sample is not None:  # a shipped model: its held-out sample opens at once, the full grid is simulated
        sources = {"held-out stars shipped with the model": app_common.source_to_json(sample),
                   "the model's whole training grid (simulated on first use)": own_json}
    loaded_json = st.session_state.get("data_source")
    if loaded_json and loaded_json not in sources.values():
        sources["the data loaded in the Data tab"] = loaded_json
    choice = st.radio("Stars from", list(sources), horizontal=True, key="star_source") if len(sources) > 1 \
        else next(iter(sources))
    source_json = sources[choice]
    star_source = "model" if source_json == own_json else "loaded"
    try:
        dataset = get_dataset(source_json)
    except (DataError, FileNotFoundError, OSError, ValueError) as error:
        st.error(f"The data could not be loaded: {error}")
        return
    if star_source == "loaded":
        problem = uploads.compatibility_error(dataset, run)
        if problem:
            st.error(f"These spectra cannot go through this model: {problem}", icon=":material/block:")
            return
    own = star_source == "model"
    include_training = st.toggle("Include training stars", value=False, key="include_training",
                                 help="By default only held-out stars (never seen in training) are listed.") if own else True
    choices = app_spectra.star_choices(run, dataset, include_training=include_training, own_data=own)
    if st.session_state.get("star_dataset") != source_json or st.session_state.get("star") is None:
        st.session_state.star_dataset = source_json
        reset_star_state(app_spectra.default_star(choices, dataset))
    star = int(st.session_state.star)
    if star not in choices:
        choices = [star] + choices
    split = app_spectra.split_names(run, len(dataset)) if own else None
    st.session_state.star_pick = star

    def on_pick():
        reset_star_state(st.session_state.star_pick)

    pick_col, map_col = st.columns([3, 2])
    pick_col.selectbox(
        f"Star ({len(choices)} listed; type an id to search)", choices, key="star_pick", on_change=on_pick,
        format_func=lambda i: app_common.describe_object(dataset.labels, i) + (f" · {split[i]}" if split is not None else ""))
    if own:
        with map_col.popover("Pick a star on the latent map", icon=":material/scatter_plot:"):
            coordinates = pca_coordinates(str(record.path), app_common.run_stamp(record), source_json, "z")
            figure = plots.embedding_figure(coordinates, dataset.labels["teff"] if "teff" in dataset.labels.colnames
                                            else split, "teff", "pca",
                                            hover=hover_texts(str(record.path), app_common.run_stamp(record), source_json),
                                            selected=star, height=380, title="PCA of the latent z (click a star)")
            event = st.plotly_chart(figure, key="generate_map", on_select="rerun", selection_mode="points",
                                    config=plots.PLOTLY_CONFIG, theme=None)
            picked = clicked_star(event, "generate_map")
            if picked is not None and picked != star:
                reset_star_state(picked)
                st.rerun()
    presets = plots.zoom_presets(run.wavelength)
    if st.session_state.get("zoom") not in presets:
        st.session_state.zoom = plots.default_zoom(run.wavelength)
    options = st.columns([2, 3, 2], vertical_alignment="bottom")
    zoom = options[0].selectbox("Zoom on", list(presets), key="zoom",
                                help="Diagnostic lines of this wavelength range; drag on the chart to zoom freely, "
                                     "double-click to return to the preset.")
    shown = options[1].pills("Show", SHOW, selection_mode="multi", default=SHOW, key="show")
    use_edit = options[2].toggle("Edit the latent z by hand", key="edit_latent",
                                 help="Like GANDALF's viewer: one slider per latent dimension, decoded at the Teff "
                                      "and log g of the sliders. Off: the star's own latent.")
    generate_fragment(str(record.path), app_common.run_stamp(record), source_json, star, zoom, tuple(shown or ()),
                      use_edit)
    grid_section(run, dataset, star)


@st.fragment
def generate_fragment(run_path: str, stamp: float, source_json: str, star: int, zoom: str, shown: tuple,
                      use_edit: bool) -> None:
    """Only the sliders and what they redraw live here, so a slider move reruns as little as possible.

    The sliders and the chart are one live component (:mod:`astrocore.app.live`): a move is decoded
    and drawn in the browser, and its values come back here once the slider rests, for the true
    spectrum, the captions and the downloads. A decoder the browser cannot evaluate keeps Streamlit's
    sliders and chart (each move a rerun), with a note."""
    run = get_run(run_path, stamp)
    dataset = get_dataset(source_json)
    star_values = app_spectra.star_conditionals(run, dataset.labels, star)
    star_key = f"{star}@{source_json}@{run_path}"
    try:
        url = live.decoder_url(run_path, stamp, str(live.served_dir()), getattr(run, "model", None))
        unsupported = None
    except live_decoder.UnsupportedDecoder as error:
        url, unsupported = None, str(error)
    specs = app_spectra.slider_specs(run.training_range)
    edited = latent_editor(run_path, stamp, source_json, star) if use_edit else None
    if url is not None:
        values = live.settled_values(st.session_state, "cp_", specs, star_values, star_key,
                                     st.session_state.get(live.GENERATE_KEY))
        chart = st.container()
    else:
        controls, chart = st.columns([1, 3], gap="medium")
        values = conditional_sliders(run.training_range, star_values, key="cp_", star=star_key,
                                     controls=controls, warnings=chart)
        controls.caption(f"Each move is decoded on the server: {unsupported}.")
    base_latent = star_latent(run_path, stamp, source_json, star)
    view = app_spectra.star_view(run, dataset, star, values, latent=edited, base_latent=base_latent)
    truth = None
    if get_renderer(source_json) is not None and "True" in (shown or []):
        truth = true_flux(source_json, star, json.dumps(values, sort_keys=True))
    shown = shown or []
    traces = {
        "Original": view.original if "Original" in shown else None,
        "Reconstruction": view.reconstruction if "Reconstruction" in shown else None,
        "Generated": view.generated if "Generated" in shown else None,
        "True": truth,
    }
    residuals = {}
    if truth is not None and "Generated" in shown:
        residuals["Gen. − true"] = view.generated - truth
    elif "Reconstruction" in shown:
        residuals["Recon. − orig."] = view.reconstruction - view.original
    short = lambda name: LABEL_TITLES.get(name, name).split(" [")[0]  # noqa: E731
    observed = ", ".join(f"{short(k)} {v:g}" for k, v in star_values.items())
    target = ", ".join(f"{short(k)} {v:g}" for k, v in values.items())
    star_id = dataset.labels["id"][star] if "id" in dataset.labels.colnames else star
    prefix, suffix = f"Star {star_id} (observed at {observed}) → generated at ", " · edited latent" if edited is not None else ""
    xrange = plots.zoom_presets(run.wavelength)[zoom]
    figure = plots.spectrum_figure(run.wavelength, traces, residuals, xrange=xrange, title=f"{prefix}<b>{target}</b>{suffix}",
                                   extrapolation=view.extrapolation, meta={"values": values, "star": star},
                                   uirevision=f"{zoom}")
    with chart:
        if url is not None:
            live.live_component(
                "generate", key=live.GENERATE_KEY, height=620, figure=live.figure_json(figure),
                pixels=plots.spectrum_pixels(run.wavelength, traces, residuals, xrange=xrange).tolist(),
                specs=live.slider_args(specs, star_values), values=values, star=star_key,
                own_snapped={s.name: app_spectra.snap(star_values[s.name], s) for s in specs},
                latent=[float(v) for v in (base_latent if edited is None else edited)], decoder_url=url,
                generated_name="Generated", stale=["True", "Gen. − true"], title_prefix=prefix, title_suffix=suffix,
                colors={"generated": plots.COLORS["generated"], "extrapolation": plots.COLORS["extrapolation"]},
                extrapolation_note=EXTRAPOLATION_NOTE, config=plots.PLOTLY_CONFIG)
        else:
            st.plotly_chart(figure, key="spectrum_chart", config=plots.PLOTLY_CONFIG, theme=None)
        notes = []
        if truth is not None:
            notes.append(f"RMS(generated − true) = {app_spectra.rms(view.generated, truth):.4f}")
        notes.append(f"RMS(reconstruction − original) = {app_spectra.rms(view.reconstruction, view.original):.4f}")
        if get_renderer(source_json) is None:
            notes.append("no true spectrum: these data have no simulator behind them")
        st.caption(" · ".join(notes) + " (flux units)" + (f" · at {target}" if url is not None else ""))
        downloads = st.columns(2)
        stem = app_spectra.export_name(run.id, f"star{star}-" + "-".join(f"{k}{v:g}" for k, v in values.items()), "")[:-1]
        single = lambda: app_spectra.single_spectrum_dataset(run, view, dataset)  # noqa: E731
        downloads[0].download_button("Generated spectrum · FITS", data=lambda: app_spectra.fits_bytes(single()),
                                     file_name=f"{stem}.fits", mime="application/fits", on_click="ignore",
                                     icon=":material/download:", width="stretch")
        downloads[1].download_button("Generated spectrum · CSV", data=lambda: app_spectra.csv_bytes(single()),
                                     file_name=f"{stem}.csv", mime="text/csv", on_click="ignore",
                                     icon=":material/download:", width="stretch")


def latent_editor(run_path: str, stamp: float, source_json: str, star: int) -> list[float]:
    """One Streamlit slider per latent dimension (each move a rerun; the live chart decodes the
    edited latent in the browser from then on)."""
    base_latent = star_latent(run_path, stamp, source_json, star)
    low, high = latent_limits(run_path, stamp)
    with st.container(border=True):
        header = st.columns([4, 1])
        header[0].markdown("**Latent dimensions** — the star's own values to start with")
        if header[1].button("Reset z", icon=":material/restart_alt:", width="stretch"):
            for i in range(len(base_latent)):
                st.session_state.pop(f"z_{i}", None)
            st.rerun(scope="fragment")
        columns = st.columns(min(len(base_latent), 8))
        edited = []
        for i, value in enumerate(base_latent):
            key = f"z_{i}"
            if key not in st.session_state:
                st.session_state[key] = round(float(min(max(value, low[i]), high[i])), 3)
            edited.append(columns[i % len(columns)].slider(f"z{i}", round(float(low[i]), 3),
                                                           round(float(high[i]), 3), key=key, step=0.01,
                                                           format="%.2f"))
    return edited


def grid_section(run, dataset, star: int) -> None:
    """Outside the slider fragment (it does not change with every move): the star's own latent
    decoded over the training range; parameters that are not grid axes stay at the slider values."""
    specs = app_spectra.slider_specs(run.training_range)
    values = {spec.name: float(st.session_state.get(f"cp_{spec.name}", spec.train_low)) for spec in specs}
    edited = None
    with st.expander("A whole grid: this star over Teff × log g (download)"):
        axes_specs = [spec for spec in specs if spec.name in ("teff", "logg")] or specs[:2]
        columns = st.columns(len(axes_specs) + 1)
        counts = {}
        for column, spec in zip(columns, axes_specs):
            counts[spec.name] = column.number_input(f"Points in {spec.title}", 1, 60,
                                                    15 if spec.name == "teff" else 14, key=f"grid_n_{spec.name}")
        axes = {spec.name: app_spectra.grid_axis(spec, counts[spec.name]) for spec in axes_specs}
        fixed = {name: value for name, value in values.items() if name not in axes}
        total = 1
        for axis in axes.values():
            total *= len(axis)
        columns[-1].metric("Spectra", total)
        st.caption("Axes span the training range: " + "; ".join(
            f"{LABEL_TITLES.get(n, n)} {a[0]:g} … {a[-1]:g} ({len(a)} values)" for n, a in axes.items())
            + (f"; fixed: {fixed}" if fixed else "") + ". Every spectrum carries its labels and the source star.")
        make = lambda: app_spectra.generate_grid(run, dataset, star, axes, fixed, latent=edited)  # noqa: E731
        buttons = st.columns(2)
        buttons[0].download_button("Grid · FITS", data=lambda: app_spectra.fits_bytes(make()),
                                   file_name=app_spectra.export_name(run.id, f"star{star}-grid", "fits"),
                                   mime="application/fits", on_click="ignore", icon=":material/grid_on:",
                                   width="stretch")
        buttons[1].download_button("Grid · CSV", data=lambda: app_spectra.csv_bytes(make()),
                                   file_name=app_spectra.export_name(run.id, f"star{star}-grid", "csv"), mime="text/csv",
                                   on_click="ignore", icon=":material/grid_on:", width="stretch")
        if "teff" in axes and st.toggle("Preview: the star along Teff at the current log g", key="grid_preview"):
            preview_axes = {"teff": axes["teff"]}
            preview_fixed = {k: v for k, v in values.items() if k != "teff"}
            grid = app_spectra.generate_grid(run, dataset, star, preview_axes, preview_fixed, latent=edited)
            presets = plots.zoom_presets(run.wavelength)
            zoom = st.session_state.get("zoom", "Full range")
            st.plotly_chart(plots.grid_figure(run.wavelength, grid.spectra, grid.labels["teff"], "Teff [K]",
                                              xrange=presets.get(zoom)), key="grid_chart", config=plots.PLOTLY_CONFIG, theme=None)
