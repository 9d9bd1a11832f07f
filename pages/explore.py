"""Embedding explorer: UMAP / t-SNE / PCA of any run (latent z, input spectra X or encoder features
h), colours, lasso selections with linked views (spectra, label histograms, cutouts), nearest
neighbours of a picked object or of an uploaded spectrum, decoder sliders, tags and export.

UI only: the logic (projections, selections, neighbours, tags, export, figures) lives in
astrocore.explore, background work in astrocore.jobs.
"""
import json

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitAPIException

from astrocore import embeddings
from astrocore.app import common as app_common
from astrocore.app import cutouts, explore, explore_export, explore_figures, explore_neighbours, plots
from astrocore.app import spectra as app_spectra
from astrocore.app import uploads
from astrocore.app.widgets import clicks_through_selections, conditional_sliders
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


# ============================================================================ cached resources
@st.cache_resource(max_entries=4, show_spinner="Loading the model …")
def get_run(path: str, stamp: float):
    return app_common.load_run(path)


@st.cache_resource(max_entries=4, show_spinner="Loading the run's data (cached on disk after the first time) …")
def get_data(path: str, stamp: float):
    return explore.load_explore_data(get_run(path, stamp))


@st.cache_data(max_entries=8, show_spinner=False)
def get_hover(path: str, stamp: float):
    return explore.hover_texts(get_data(path, stamp))


@st.cache_data(max_entries=16, show_spinner="Projecting with PCA (the encoder features h are computed first) …")
def get_pca(path: str, stamp: float, representation: str):
    return explore.compute_projection(get_data(path, stamp), representation, "pca")


@st.cache_data(max_entries=8, show_spinner="Reading the spectrum …")
def read_upload(path: str, stamp: float, name: str, payload: bytes, index: int):
    return explore_neighbours.read_upload(name, payload, get_run(path, stamp), index=index)


@st.cache_data(max_entries=8, show_spinner=False)
def get_cutouts(path: str, stamp: float, rows: tuple, mode: str, title: str, linked: str):
    data = get_data(path, stamp)
    names = [str(data.ids[r]) for r in rows]
    return cutouts.cutout_grid_figure(data.images, data.bands, list(rows), names, mode=mode, title=title,
                                      linked=linked)


def rerun_fragment() -> None:
    """Rerun only the fragment when called during a fragment rerun, else the whole page."""
    try:
        st.rerun(scope="fragment")
    except StreamlitAPIException:
        st.rerun()


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

top = st.columns([3, 4, 4])
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
representation = top[1].radio("Representation", available, key="explore_rep", horizontal=True,
                              format_func=data.representations.get,
                              help="z: the model's latent vectors; X: the input spectra; h: the activations of the "
                                   "encoder's last hidden layer, or for the polynomial encoder the spectrum's principal components "
                                   "(computed from the model when first chosen).")
method = top[2].radio("Projection", list(embeddings.PROJECTION_METHODS), key="explore_method", horizontal=True,
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
shown = explore.display_subset(len(data), seed=0)
if len(shown) < len(data):
    st.caption(f"Showing a random subsample of {len(shown):,} of {len(data):,} objects for speed; lasso, box and "
               "neighbour searches use all of them.")


@st.fragment
def explorer() -> None:
    # The chart's last selection event is in session state before the chart is drawn: applying it
    # first draws the highlighted selection and the linked views in one pass, not two.
    explore.apply_chart_event(st.session_state, st.session_state.get("explore_chart"), coordinates, mode)
    rows = np.asarray(st.session_state.get("explore_rows") or [], int)
    pick = st.session_state.get("explore_pick")
    # After a new lasso plotly already highlights the selection: the scatter is then drawn exactly as
    # before, so Streamlit sends a reference instead of the figure and the browser redraws nothing.
    base = json.dumps([selection_owner, representation, method, params, seed, colour, len(shown), pick], default=str)
    highlight, revision = explore.scatter_highlight(st.session_state, rows, base)
    title = f"{embeddings.PROJECTION_METHODS[method].split(' ')[0]} of {data.representations[representation]} · {record.id}"
    figure = explore_figures.embedding_figure(coordinates, data.table[colour].to_numpy(), colour, method,
                                      hover=get_hover(str(record.path), stamp), shown=shown,
                                      selected=highlight, marked=pick, title=title, revision=revision)
    clicks_through_selections()
    st.plotly_chart(figure, key="explore_chart", on_select="rerun",
                    selection_mode=("lasso", "box", "points"), config=CHART_CONFIG, theme=None)
    st.caption("Drag to lasso (the toolbar also has a box tool). To pick one object for its neighbours and the "
               "decoder, choose **Pan** in the toolbar and click it, or type its id below. The current selection "
               "stays until you clear it or start a new one.")
    selection_views(rows)
    neighbours_view()


def selection_views(rows: np.ndarray) -> None:
    header = st.columns([4, 1])
    header[0].markdown(f"#### Selection · {explore.selection_summary(data, rows)}")
    if header[1].button("Clear selection", key="explore_clear", icon=":material/deselect:", disabled=not len(rows)):
        st.session_state.explore_rows = []
        rerun_fragment()
    if not len(rows):
        st.caption("Nothing selected yet: lasso a group of points above.")
        tags_view(rows)
        return
    if data.spectra is not None:
        st.plotly_chart(explore_figures.selection_spectra_figure(data.wavelength, data.spectra, rows),
                        key="explore_spectra", config=plots.PLOTLY_CONFIG, theme=None)
    else:
        st.caption("The spectra of this run cannot be rebuilt, so only labels are compared.")
    try:
        st.plotly_chart(explore_figures.label_histograms_figure(data, rows), key="explore_hist",
                        config=plots.PLOTLY_CONFIG, theme=None)
    except embeddings.ProjectionError as error:
        st.caption(str(error))
    if data.images is not None:
        cutouts_view(rows)
    with st.expander(f"The {len(rows):,} selected objects", key="explore_table_open", on_change="rerun") as table:
        if table.open:  # built only when opened: a 10,000-row table would slow every lasso
            st.dataframe(data.table.iloc[rows], hide_index=True, width="stretch")
    tags_view(rows)


def cutout_mode() -> str:
    modes = cutouts.cutout_modes(data.bands)
    if st.session_state.get("explore_cutout_mode") not in modes:
        st.session_state.explore_cutout_mode = "rgb"
    return st.session_state.explore_cutout_mode


def cutouts_view(rows: np.ndarray) -> None:
    """A grid of the selection's cutouts (a reproducible sample of them when there are many)."""
    modes = cutouts.cutout_modes(data.bands)
    cutout_mode()
    columns = st.columns([2, 3], vertical_alignment="bottom")
    columns[0].markdown(f"**Cutouts** ({', '.join(data.bands)})")
    columns[1].selectbox("Show", list(modes), key="explore_cutout_mode", format_func=modes.get,
                         label_visibility="collapsed")
    shown_rows = rows
    if len(rows) > cutouts.MAX_CUTOUTS:
        shown_rows = rows[explore.display_subset(len(rows), cutouts.MAX_CUTOUTS)]
        st.caption(f"{cutouts.MAX_CUTOUTS} of the {len(rows):,} selected objects, chosen at random.")
    st.plotly_chart(get_cutouts(str(record.path), stamp, tuple(int(r) for r in shown_rows), cutout_mode(), "",
                                "cutouts"), key="explore_cutouts", config=plots.PLOTLY_CONFIG, theme=None)


def tags_view(rows: np.ndarray) -> None:
    tags = explore_export.load_tags(record.path)
    with st.container(border=True):
        st.markdown("**Tag and export**")
        columns = st.columns([3, 1, 3], vertical_alignment="bottom")
        name = columns[0].text_input("Name this selection", key="explore_tag_name", placeholder="e.g. metal-poor giants")
        if columns[1].button("Save tag", key="explore_tag_save", icon=":material/sell:", disabled=not len(rows),
                             width="stretch"):
            try:
                explore_export.save_tag(record.path, name, data, rows)
                st.toast(f"Saved the tag '{name.strip()}' ({len(rows)} objects) in {record.id}/tags.json")
                tags = explore_export.load_tags(record.path)
            except (embeddings.ProjectionError, OSError) as error:
                st.error(str(error), icon=":material/error:")
        if tags:
            chosen = columns[2].selectbox("Saved tags", list(tags), key="explore_tag_pick",
                                          format_func=lambda t: f"{t} ({len(tags[t]['ids'])} objects)")
            buttons = st.columns(4)
            if buttons[0].button("Select this tag", key="explore_tag_load", icon=":material/select:"):
                st.session_state.explore_rows = explore.combine(rows, explore_export.tag_rows(data, tags[chosen]),
                                                                mode).tolist()
                rerun_fragment()
            if buttons[1].button("Delete this tag", key="explore_tag_delete", icon=":material/delete:"):
                explore_export.delete_tag(record.path, chosen)
                rerun_fragment()
        if len(rows):
            table = lambda: explore_export.selection_table(data, rows, coordinates, method, representation)
            stem = (name.strip() or "selection").replace(" ", "_").replace("/", "_")
            downloads = st.columns(3)
            for column, fmt in zip(downloads, explore.EXPORT_FORMATS):
                mime, extension = explore.EXPORT_FORMATS[fmt]
                column.download_button(f"{len(rows)} objects · {fmt.upper() if fmt != 'votable' else 'VOTable'}",
                                       data=lambda fmt=fmt: explore_export.export_bytes(table(), fmt),
                                       file_name=f"{record.id}-{stem}.{extension}", mime=mime, on_click="ignore",
                                       icon=":material/download:", width="stretch", key=f"explore_export_{fmt}")
            st.caption("Each row: id, labels, split, reconstruction error, the two projection coordinates and the "
                       f"latent vector z_0 … z_{data.latent.shape[1] - 1}.")


NEIGHBOURS_OF = {"object": "an object of this run", "upload": "an uploaded spectrum"}


def neighbours_view() -> None:
    header = st.columns([3, 2], vertical_alignment="bottom")
    header[0].markdown("#### Nearest neighbours")
    source = header[1].segmented_control("Neighbours of", list(NEIGHBOURS_OF), key="explore_nn_source",
                                         default="object", format_func=NEIGHBOURS_OF.get,
                                         label_visibility="collapsed") or "object"
    if source == "upload":
        upload_neighbours_view()
        return
    columns = st.columns([3, 1, 1], vertical_alignment="bottom")
    typed = columns[0].text_input("Object id (or click a point)", key="explore_nn_id",
                                  placeholder=f"e.g. {data.ids[0]}")
    k = columns[1].number_input("k", 1, 50, 5, key="explore_nn_k")
    if columns[2].button("Find", key="explore_nn_find", icon=":material/search:", width="stretch"):
        try:
            st.session_state.explore_pick = explore_neighbours.find_object(data, typed)
        except embeddings.ProjectionError as error:
            st.error(str(error), icon=":material/error:")
    pick = st.session_state.get("explore_pick")
    if pick is None:
        st.caption("Click a point in the chart or type an id to see its nearest neighbours.")
        return
    pick = int(pick)
    try:
        values = explore.representation_values(data, representation)
        found, distances = explore_neighbours.nearest_neighbours(values, pick, int(k))
    except embeddings.ProjectionError as error:
        st.error(str(error), icon=":material/error:")
        return
    described = str(get_hover(str(record.path), stamp)[pick]).replace(f"id {data.ids[pick]} · ", "")
    st.markdown(f"**{data.ids[pick]}** · {described} — its {len(found)} nearest neighbours in "
                f"{data.representations[representation]} (Euclidean distance)")
    show_neighbours(data.spectra[pick] if data.spectra is not None else None, str(data.ids[pick]), found, distances,
                    query_row=pick)
    if getattr(run, "method", "") == "disentangle" and data.spectra is not None:
        decoder_view(pick)


def show_neighbours(query, query_name: str, found, distances, query_row: int | None = None) -> None:
    """The neighbours' table, their spectra beside the query's and (with images) their cutouts."""
    left, right = st.columns([2, 3])
    left.dataframe(explore_neighbours.neighbours_table(data, found, distances), hide_index=True, width="stretch",
                   column_config={"distance": st.column_config.NumberColumn(format="%.4g")})
    if data.spectra is not None and query is not None:
        names = [query_name] + [f"{data.ids[r]} (d = {d:.3g})" for r, d in zip(found, distances)]
        right.plotly_chart(explore_figures.neighbours_figure(data.wavelength, query, data.spectra, found, names),
                           key="explore_nn_chart", config=plots.PLOTLY_CONFIG, theme=None)
    if data.images is not None:
        rows = ([query_row] if query_row is not None else []) + [int(r) for r in found]
        st.plotly_chart(get_cutouts(str(record.path), stamp, tuple(rows), cutout_mode(),
                                    "The query (first) and its neighbours" if query_row is not None else
                                    "The neighbours", "neighbour_cutouts"),
                        key="explore_nn_cutouts", config=plots.PLOTLY_CONFIG, theme=None)


def upload_neighbours_view() -> None:
    """Nearest neighbours of a spectrum from a file: read, put on the run's grid, encode, compare."""
    columns = st.columns([3, 1], vertical_alignment="bottom")
    upload = columns[0].file_uploader(
        "A spectrum: an astrocore/APOGEE FITS file, a FITS or CSV table (one flux_<wavelength> column per pixel) "
        "or a .npz", key="explore_upload", on_change=lambda: st.session_state.pop("explore_upload_index", None),
        help=f"The first spectrum of the file is used (choose another below). Spectra on another wavelength grid "
             f"are interpolated onto the run's when they cover it; up to {app_common.MAX_UPLOAD_MB} MB.")
    k = columns[1].number_input("k", 1, 50, 5, key="explore_upload_k")
    examples = sorted(p.name for p in uploads.example_files() if not p.name.endswith(".zip"))
    if upload is None:
        st.caption("Upload a spectrum to find the objects of this run that resemble it most"
                   + (f" (try {', '.join(f'`assets/{e}`' for e in examples)})." if examples else "."))
        return
    index = int(st.session_state.get("explore_upload_index", 1)) - 1
    try:
        spectrum = read_upload(str(record.path), stamp, upload.name, upload.getvalue(), max(index, 0))
    except embeddings.ProjectionError as error:
        st.error(str(error), icon=":material/error:")
        return
    if spectrum.n_in_file > 1:
        st.number_input(f"Spectrum in the file (1–{spectrum.n_in_file})", 1, spectrum.n_in_file, 1,
                        key="explore_upload_index")
    notes = [spectrum.label_text]
    if spectrum.resampled:
        notes.append("interpolated onto the run's wavelength grid")
    st.caption(f"**{upload.name}** · " + " · ".join(notes))
    conditional = dict(spectrum.conditional)
    if representation != "X" and spectrum.missing:
        st.markdown("The file does not give " + ", ".join(explore.COLUMN_TITLES.get(n, n).split(" [")[0]
                                                          for n in spectrum.missing)
                    + ", which the encoder needs: enter them (the training-range centre to start with).")
        inputs = st.columns(len(spectrum.missing))
        defaults = explore_neighbours.conditional_defaults(run)
        for column, name in zip(inputs, spectrum.missing):
            low, high = run.training_range[name]
            conditional[name] = column.number_input(explore.COLUMN_TITLES.get(name, name), value=float(defaults[name]),
                                                    key=f"explore_upload_cp_{name}",
                                                    help=f"Training range {low:g} – {high:g}.")
    try:
        found, distances = explore_neighbours.upload_neighbours(run, data, spectrum, representation, int(k), conditional)
    except (embeddings.ProjectionError, DataError) as error:
        st.error(str(error), icon=":material/error:")
        return
    st.markdown(f"The {len(found)} objects nearest to **{upload.name}** in "
                f"{data.representations[representation]} (Euclidean distance)")
    show_neighbours(spectrum.flux, upload.name, found, distances)


def decoder_view(pick: int) -> None:
    """The decoder beside the picked star: what would it look like at another Teff / log g?"""
    st.markdown(f"#### {data.ids[pick]} through the decoder")
    own = explore_neighbours.decoder_values(run, data, pick)
    controls, chart = st.columns([1, 3])
    values = conditional_sliders(run.training_range, own, key="explore_cp_", star=f"{selection_owner}#{pick}",
                                 controls=controls, warnings=chart)
    try:
        original, generated, extrapolated = explore_neighbours.generated_at(run, data, pick, values)
    except (embeddings.ProjectionError, DataError) as error:
        st.error(str(error))
        return
    with chart:
        target = ", ".join(f"{explore.COLUMN_TITLES.get(k, k).split(' [')[0]} {v:g}" for k, v in values.items())
        figure = plots.spectrum_figure(data.wavelength, {"Original": original, "Generated": generated},
                                       {"Gen. − orig.": generated - original}, title=f"{data.ids[pick]} at {target}",
                                       extrapolation=extrapolated, meta={"values": values, "star": pick},
                                       uirevision="explore-decoder", height=420)
        st.plotly_chart(figure, key="explore_decoder_chart", config=plots.PLOTLY_CONFIG, theme=None)


explorer()
