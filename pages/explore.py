"""Embedding explorer: UMAP / t-SNE / PCA of any run (latent z, input spectra X or encoder features
h), colours, lasso selections with linked views (spectra, label histograms, cutouts), nearest
neighbours of a picked object or of an uploaded spectrum, decoder sliders, tags and export.

UI only: the logic (projections, selections, neighbours, tags, export, figures) lives in
astrocore.explore, background work in astrocore.jobs.
"""
import json

import numpy as np
import streamlit as st

from astrocore import embeddings
from astrocore.app import common as app_common
from astrocore.app import explore, explore_figures, explore_scale, live
from astrocore.app import spectra as app_spectra
from astrocore.app.explore_views import (ExploreView, get_data, get_hover, get_pca, get_rank, get_run,
                                         neighbours_view, selection_views)
from astrocore.data.dataset import DataError

if not st.session_state.get("astrocore_app"):
    # Opened by URL before app.py ever ran in this server (Streamlit's pages/-folder mode): run the app
    # entry point, which sets up the navigation and then renders this page.
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"), run_name="__main__")
    st.stop()

CHART_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["autoScale2d"], "editSelection": False,
                "toImageButtonOptions": {"format": "png", "scale": 2}}


# ============================================================================ page
st.title("Embedding explorer")
st.caption("Project a run's latent z, its input spectra X or its encoder features h to 2-d, colour by any label, "
           "lasso a group of stars and compare their spectra and labels with the rest, find the nearest neighbours "
           "of a star or of an uploaded spectrum, tag and export.")

records = app_common.finished_runs(method=None)  # any registered method
if not records:
    st.info("No finished runs yet. The **Spectra** page trains a default model on its first visit; "
            "`astrocore train disentangle ...` adds runs from the command line.", icon=":material/info:")
    st.stop()
by_id = {r.id: r for r in records}
if st.session_state.get("explore_run") not in by_id:
    st.session_state.explore_run = app_common.choose_default_run(records).id

top = st.columns([6, 5])  # the run's label (id, mode, data) read whole; the two choices below it
run_id = top[0].selectbox("Run", list(by_id), key="explore_run", format_func=lambda rid: app_common.run_label(by_id[rid]))
record = by_id[run_id]
stamp = app_common.run_stamp(record)
try:
    run = get_run(str(record.path), stamp)
    data = get_data(str(record.path), stamp)
except (DataError, embeddings.ProjectionError, OSError, ValueError, RuntimeError, KeyError) as error:
    st.error(f"The run {record.id} could not be opened for exploring: {error}", icon=":material/error:")
    st.stop()
available = data.available()
if st.session_state.get("explore_rep") not in available:
    st.session_state.explore_rep = "z"
choices = st.columns([6, 5])
representation = choices[0].radio("Representation", available, key="explore_rep", horizontal=True,
                                  format_func=data.representations.get,
                                  help="z: the model's latent vectors; X: the input spectra; h: the activations of the "
                                       "encoder's last hidden layer, or for the polynomial encoder the spectrum's principal components "
                                       "(computed from the model when first chosen).")
method = choices[1].radio("Projection", list(embeddings.PROJECTION_METHODS), key="explore_method", horizontal=True,
                          format_func=embeddings.PROJECTION_METHODS.get,
                          help="PCA is computed here at once; UMAP and t-SNE run in the background and are cached in "
                               "the run folder per (representation, method, parameters).")

params = {}
if method != "pca":
    columns = st.columns(4)
    if method == "umap":
        params["n_neighbors"] = columns[0].number_input("Neighbours", 2, 200, 15, key="explore_umap_nn",
                                                        help="UMAP's n_neighbors: larger keeps more global structure.")
        params["min_dist"] = columns[1].number_input("Minimum distance", 0.0, 1.0, 0.1, step=0.05,
                                                     key="explore_umap_md", help="UMAP's min_dist.")
    else:
        params["perplexity"] = columns[0].number_input("Perplexity", 2.0, 500.0, min(30.0, max(2.0, len(data) / 4)),
                                                       step=5.0, key="explore_tsne_perplexity",
                                                       help="openTSNE's perplexity (about the neighbourhood size).")
    seed = columns[2].number_input("Seed", 0, 10**6, 0, key="explore_seed")
else:
    seed = 0

# ---------------------------------------------------------------------------- the projection
coordinates = None
try:
    if method == "pca":
        coordinates = get_pca(str(record.path), stamp, representation)
    else:
        params = explore.projection_params(method, params)
        explore.check_projectable(len(data), method, params)
        coordinates = explore.read_projection(record.path, representation, method, params, seed)
except embeddings.ProjectionError as error:
    st.error(str(error), icon=":material/error:")
    st.stop()

if coordinates is None:
    status = explore.projection_status(record.path, representation, method, params, seed)
    expected = explore.expected_seconds(len(data), method)
    if status["state"] in ("starting", "running", "cancelling"):
        @st.fragment(run_every=1.0)
        def wait_for_projection():
            current = explore.projection_status(record.path, representation, method, params, seed)
            if current["state"] not in ("starting", "running", "cancelling"):
                st.rerun()
            if current["state"] == "cancelling":
                st.progress(1.0, text="Cancelling …")
                return
            fraction = min(0.95, current["elapsed"] / max(expected, 1.0))
            row = st.columns([5, 1], vertical_alignment="center")
            row[0].progress(fraction, text=f"Computing {embeddings.PROJECTION_METHODS[method]} of {len(data):,} "
                                           f"{data.representations[representation]} vectors in the background … "
                                           f"{current['elapsed']:.0f} s (about {expected:.0f} s expected). "
                                           "You can leave the page; the result is kept in the run folder.")
            if row[1].button("Cancel", key="explore_cancel", icon=":material/cancel:", width="stretch"):
                try:
                    explore.cancel_projection(record.path, representation, method, params, seed)
                except embeddings.ProjectionError as error:
                    st.error(str(error))
                st.rerun()
        wait_for_projection()
    else:
        if status["state"] == "cancelled":
            st.caption("The last attempt was cancelled.")
        if status["state"] == "failed":
            st.error(f"The projection failed: {status['message'] or 'see the log below'}", icon=":material/error:")
            if status.get("log"):
                with st.expander("Last lines of the log"):
                    st.code(status["log"], language=None)
        st.info(f"{embeddings.PROJECTION_METHODS[method]} of {data.representations[representation]} with "
                f"{', '.join(f'{k} = {v:g}' for k, v in params.items())} (seed {seed}) is not computed yet "
                f"(about {expected:.0f} s for {len(data):,} objects on this machine).", icon=":material/hub:")
        if st.button(f"Compute {embeddings.PROJECTION_METHODS[method]} in the background", type="primary", icon=":material/hub:",
                     key="explore_compute"):
            try:
                explore.start_projection(record.path, representation, method, params, seed)
            except Exception as error:
                st.error(f"Could not start the projection: {error}")
            else:
                st.rerun()
        with st.expander("The same on the command line"):
            st.code(app_spectra.cli_command_text(explore.embed_command(record.path, representation, method, params,
                                                                 seed)), language="bash")
    st.stop()

# ---------------------------------------------------------------------------- selection state
selection_owner = f"{record.id}/{stamp}"
if st.session_state.get("explore_rows_owner") != selection_owner:
    if st.session_state.get("explore_rows_owner") is not None:  # another run: its rows mean nothing here
        st.session_state.explore_rows = []
        st.session_state.explore_pick = None
        st.session_state.explore_skip_event = True  # the chart may still hold the other run's selection
    st.session_state.explore_rows_owner = selection_owner

options = st.columns([2, 3, 2])
colour = options[0].selectbox("Colour by", explore.colour_options(data), key="explore_colour",
                              format_func=lambda name: explore.COLUMN_TITLES.get(name, name))
mode = options[1].segmented_control("Next lasso / box", list(explore.COMBINE), key="explore_combine",
                                    default="replace", format_func=explore.COMBINE.get,
                                    help="How the next lasso or box combines with the current selection: New "
                                         "replaces it, Union adds to it, Intersection keeps the common objects, "
                                         "Remove takes the new ones away.") or "replace"
# Large runs: a capped sample of points over a density image of all objects, and a zoom to a window.
large = len(data) > explore.MAX_DISPLAY
view_key = json.dumps([selection_owner, representation, method, params, seed], default=str)
zoomed = st.session_state.get("explore_window") or {}
window = zoomed.get("window") if large and zoomed.get("key") == view_key else None
plan = explore_scale.display_plan(coordinates, window=window, rank=get_rank(len(data)))
shown = plan.shown


@st.fragment
def explorer() -> None:
    # The chart's last selection event is in session state before the chart is drawn: applying it
    # first draws the highlighted selection and the linked views in one pass, not two.
    explore.apply_chart_event(st.session_state, st.session_state.get("explore_chart"), coordinates, mode)
    rows = np.asarray(st.session_state.get("explore_rows") or [], int)
    pick = st.session_state.get("explore_pick")
    # After a new lasso plotly already highlights the selection: the scatter is then drawn exactly as
    # before, so Streamlit sends a reference instead of the figure and the browser redraws nothing.
    base = json.dumps([view_key, colour, len(shown), window, pick], default=str)
    highlight, revision = explore.scatter_highlight(st.session_state, rows, base)
    title = f"{embeddings.PROJECTION_METHODS[method].split(' ')[0]} of {data.representations[representation]} · {record.id}"
    # The same figure object as last time when nothing it shows changed (the common case after a lasso):
    # building a 10,000-point scatter costs more than the linked views.
    drawn = json.dumps([base, revision, None if highlight is None else explore.rows_digest(highlight)])
    cached = st.session_state.get("explore_figure")
    if cached is None or cached[0] != drawn:
        figure = explore_figures.embedding_figure(
            coordinates, data.table[colour].to_numpy(), colour, method, hover=get_hover(str(record.path), stamp),
            shown=shown, selected=highlight, marked=pick, title=title, revision=revision, density=plan.density,
            window=window)
        cached = (drawn, live.figure_json(figure), int(figure.layout.height or 560))
        st.session_state.explore_figure = cached
    if large:
        zoom = st.columns([3, 1, 1], vertical_alignment="center")
        zoom[0].caption(plan.caption())
        if zoom[1].button("Zoom to the selection", key="explore_zoom", icon=":material/zoom_in:", width="stretch",
                          disabled=not len(rows)):
            st.session_state.explore_window = {"key": view_key, "window": explore_scale.window_around(coordinates, rows)}
            st.rerun()
        if zoom[2].button("Show everything", key="explore_unzoom", icon=":material/zoom_out_map:", width="stretch",
                          disabled=window is None):
            st.session_state.explore_window = None
            st.rerun()
    # A live component (astrocore.app.live): a lasso sends back its shape, not every point, and the
    # scatter is sent again only when the figure itself changes (``drawn``).
    live.live_component("scatter", key="explore_chart", height=cached[2] + 10, figure=cached[1],
                        figure_key=drawn, config=CHART_CONFIG)
    st.caption("Drag to lasso (the toolbar also has a box tool). To pick one object for its neighbours and the "
               "decoder, choose **Pan** in the toolbar and click it, or type its id below. The current selection "
               "stays until you clear it or start a new one.")
    view = ExploreView(run=run, record=record, data=data, stamp=stamp, representation=representation, method=method,
                       coordinates=coordinates, mode=mode, selection_owner=selection_owner)
    selection_views(view, rows)
    neighbours_view(view)


explorer()
