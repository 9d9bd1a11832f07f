"""The embedding explorer's Streamlit views below the scatter: linked views of a selection, cutouts,
tags, neighbours of a picked or uploaded object and the decoder beside a star; with the cached runs
and data they draw from. ``pages/explore.py`` holds the page itself."""
from dataclasses import dataclass

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitAPIException

from .. import embeddings
from ..data.dataset import DataError
from . import common as app_common
from . import cutouts, explore, explore_export, explore_figures, explore_neighbours, explore_scale, plots, uploads
from .widgets import conditional_sliders


@dataclass
class ExploreView:
    """What the page has chosen: the run, its data, the projection shown and the lasso mode."""

    run: object
    record: object
    data: object
    stamp: float
    representation: str
    method: str
    coordinates: object
    mode: str
    selection_owner: str


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


@st.cache_resource(max_entries=4, show_spinner=False)
def get_rank(n: int):
    return explore_scale.priorities(n)


@st.cache_resource(max_entries=4, show_spinner=False)
def get_display_pixels(path: str, stamp: float):
    data = get_data(path, stamp)
    return explore_figures.display_pixels(data.wavelength, data.spectra)


@st.cache_data(max_entries=16, show_spinner="Measuring how close the run's objects are to each other …")
def typical_distance(path: str, stamp: float, representation: str) -> float:
    values = explore.representation_values(get_data(path, stamp), representation)
    return explore_neighbours.typical_neighbour_distance(values)


def rerun_fragment() -> None:
    """Rerun only the fragment when called during a fragment rerun, else the whole page."""
    try:
        st.rerun(scope="fragment")
    except StreamlitAPIException:
        st.rerun()


def selection_views(view: ExploreView, rows: np.ndarray) -> None:
    header = st.columns([4, 1])
    header[0].markdown(f"#### Selection · {explore.selection_summary(view.data, rows)}")
    if header[1].button("Clear selection", key="explore_clear", icon=":material/deselect:", disabled=not len(rows)):
        st.session_state.explore_rows = []
        rerun_fragment()
    if not len(rows):
        st.caption("Nothing selected yet: lasso a group of points above.")
        tags_view(view, rows)
        return
    if view.data.spectra is not None:
        pixels = get_display_pixels(str(view.record.path), view.stamp)
        st.plotly_chart(explore_figures.selection_spectra_figure(view.data.wavelength, view.data.spectra, rows,
                                                                 pixels=pixels),
                        key="explore_spectra", config=plots.PLOTLY_CONFIG, theme=None)
    else:
        st.caption("The spectra of this run cannot be rebuilt, so only labels are compared.")
    try:
        st.plotly_chart(explore_figures.label_histograms_figure(view.data, rows), key="explore_hist",
                        config=plots.PLOTLY_CONFIG, theme=None)
    except embeddings.ProjectionError as error:
        st.caption(str(error))
    if view.data.images is not None:
        cutouts_view(view, rows)
    with st.expander(f"The {len(rows):,} selected objects", key="explore_table_open", on_change="rerun") as table:
        if table.open:  # built only when opened: a 10,000-row table would slow every lasso
            st.dataframe(view.data.table.iloc[rows], hide_index=True, width="stretch")
    tags_view(view, rows)


def cutout_mode(view: ExploreView) -> str:
    modes = cutouts.cutout_modes(view.data.bands)
    if st.session_state.get("explore_cutout_mode") not in modes:
        st.session_state.explore_cutout_mode = "rgb"
    return st.session_state.explore_cutout_mode


def cutouts_view(view: ExploreView, rows: np.ndarray) -> None:
    """A grid of the selection's cutouts (a reproducible sample of them when there are many)."""
    modes = cutouts.cutout_modes(view.data.bands)
    cutout_mode(view)
    columns = st.columns([2, 3], vertical_alignment="bottom")
    columns[0].markdown(f"**Cutouts** ({', '.join(view.data.bands)})")
    columns[1].selectbox("Show", list(modes), key="explore_cutout_mode", format_func=modes.get,
                         label_visibility="collapsed")
    shown_rows = rows
    if len(rows) > cutouts.MAX_CUTOUTS:
        shown_rows = rows[explore.display_subset(len(rows), cutouts.MAX_CUTOUTS)]
        st.caption(f"{cutouts.MAX_CUTOUTS} of the {len(rows):,} selected objects, chosen at random.")
    st.plotly_chart(get_cutouts(str(view.record.path), view.stamp, tuple(int(r) for r in shown_rows), cutout_mode(view), "",
                                "cutouts"), key="explore_cutouts", config=plots.PLOTLY_CONFIG, theme=None)


def tags_view(view: ExploreView, rows: np.ndarray) -> None:
    tags = explore_export.load_tags(view.record.path)
    with st.container(border=True):
        st.markdown("**Tag and export**")
        columns = st.columns([3, 1, 3], vertical_alignment="bottom")
        name = columns[0].text_input("Name this selection", key="explore_tag_name", placeholder="e.g. metal-poor giants")
        if columns[1].button("Save tag", key="explore_tag_save", icon=":material/sell:", disabled=not len(rows),
                             width="stretch"):
            try:
                explore_export.save_tag(view.record.path, name, view.data, rows)
                st.toast(f"Saved the tag '{name.strip()}' ({len(rows)} objects) in {view.record.id}/tags.json")
                tags = explore_export.load_tags(view.record.path)
            except (embeddings.ProjectionError, OSError) as error:
                st.error(str(error), icon=":material/error:")
        if tags:
            chosen = columns[2].selectbox("Saved tags", list(tags), key="explore_tag_pick",
                                          format_func=lambda t: f"{t} ({len(tags[t]['ids'])} objects)")
            buttons = st.columns(4)
            if buttons[0].button("Select this tag", key="explore_tag_load", icon=":material/select:"):
                st.session_state.explore_rows = explore.combine(rows, explore_export.tag_rows(view.data, tags[chosen]),
                                                                view.mode).tolist()
                rerun_fragment()
            if buttons[1].button("Delete this tag", key="explore_tag_delete", icon=":material/delete:"):
                explore_export.delete_tag(view.record.path, chosen)
                rerun_fragment()
        if len(rows):
            table = lambda: explore_export.selection_table(view.data, rows, view.coordinates, view.method, view.representation)
            stem = (name.strip() or "selection").replace(" ", "_").replace("/", "_")
            downloads = st.columns(3)
            for column, fmt in zip(downloads, explore.EXPORT_FORMATS):
                mime, extension = explore.EXPORT_FORMATS[fmt]
                column.download_button(f"{len(rows)} objects · {fmt.upper() if fmt != 'votable' else 'VOTable'}",
                                       data=lambda fmt=fmt: explore_export.export_bytes(table(), fmt),
                                       file_name=f"{view.record.id}-{stem}.{extension}", mime=mime, on_click="ignore",
                                       icon=":material/download:", width="stretch", key=f"explore_export_{fmt}")
            st.caption("Each row: id, labels, split, reconstruction error, the two projection coordinates and the "
                       f"latent vector z_0 … z_{view.data.latent.shape[1] - 1}.")


NEIGHBOURS_OF = {"object": "an object of this run", "upload": "an uploaded spectrum"}


def neighbours_view(view: ExploreView) -> None:
    header = st.columns([3, 2], vertical_alignment="bottom")
    header[0].markdown("#### Nearest neighbours")
    source = header[1].segmented_control("Neighbours of", list(NEIGHBOURS_OF), key="explore_nn_source",
                                         default="object", format_func=NEIGHBOURS_OF.get,
                                         label_visibility="collapsed") or "object"
    if source == "upload":
        upload_neighbours_view(view)
        return
    columns = st.columns([3, 1, 1], vertical_alignment="bottom")
    typed = columns[0].text_input("Object id (or click a point)", key="explore_nn_id",
                                  placeholder=f"e.g. {view.data.ids[0]}")
    k = columns[1].number_input("k", 1, 50, 5, key="explore_nn_k")
    if columns[2].button("Find", key="explore_nn_find", icon=":material/search:", width="stretch"):
        try:
            st.session_state.explore_pick = explore_neighbours.find_object(view.data, typed)
        except embeddings.ProjectionError as error:
            st.error(str(error), icon=":material/error:")
    pick = st.session_state.get("explore_pick")
    if pick is None:
        st.caption("Click a point in the chart or type an id to see its nearest neighbours.")
        return
    pick = int(pick)
    try:
        values = explore.representation_values(view.data, view.representation)
        found, distances = explore_neighbours.nearest_neighbours(values, pick, int(k))
    except embeddings.ProjectionError as error:
        st.error(str(error), icon=":material/error:")
        return
    described = str(get_hover(str(view.record.path), view.stamp)[pick]).replace(f"id {view.data.ids[pick]} · ", "")
    st.markdown(f"**{view.data.ids[pick]}** · {described} — its {len(found)} nearest neighbours in "
                f"{view.data.representations[view.representation]} (Euclidean distance)")
    query = view.data.spectra[pick] if view.data.spectra is not None else None
    show_neighbours(view, query, str(view.data.ids[pick]), found, distances,
                    query_row=pick)
    if getattr(view.run, "method", "") == "disentangle" and view.data.spectra is not None:
        decoder_view(view, pick)


def show_neighbours(view: ExploreView, query, query_name: str, found, distances, query_row: int | None = None) -> None:
    """The neighbours' table, their spectra beside the query's and (with images) their cutouts."""
    left, right = st.columns([2, 3])
    left.dataframe(explore_neighbours.neighbours_table(view.data, found, distances), hide_index=True, width="stretch",
                   column_config={"distance": st.column_config.NumberColumn(format="%.4g")})
    if view.data.spectra is not None and query is not None:
        names = [query_name] + [f"{view.data.ids[r]} (d = {d:.3g})" for r, d in zip(found, distances)]
        presets = plots.zoom_presets(view.data.wavelength)
        if st.session_state.get("explore_nn_zoom") not in presets:
            st.session_state.explore_nn_zoom = plots.default_zoom(view.data.wavelength)
        controls = right.columns([3, 2])
        zoom = controls[0].selectbox("Zoom on", list(presets), key="explore_nn_zoom")
        offset = controls[1].slider("Offset between spectra", 0.0, 0.5, 0.1, 0.05, key="explore_nn_offset",
                                    help="Each neighbour is drawn this much lower in flux, so the lines do not overlap.")
        right.plotly_chart(explore_figures.neighbours_figure(view.data.wavelength, query, view.data.spectra, found,
                                                             names, offset=offset, xrange=presets[zoom]),
                           key="explore_nn_chart", config=plots.PLOTLY_CONFIG, theme=None)
    if view.data.images is not None:
        rows = ([query_row] if query_row is not None else []) + [int(r) for r in found]
        st.plotly_chart(get_cutouts(str(view.record.path), view.stamp, tuple(rows), cutout_mode(view),
                                    "The query (first) and its neighbours" if query_row is not None else
                                    "The neighbours", "neighbour_cutouts"),
                        key="explore_nn_cutouts", config=plots.PLOTLY_CONFIG, theme=None)


def upload_neighbours_view(view: ExploreView) -> None:
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
        spectrum = read_upload(str(view.record.path), view.stamp, upload.name, upload.getvalue(), max(index, 0))
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
    if view.representation != "X" and spectrum.missing:
        st.markdown("The file does not give " + ", ".join(explore.COLUMN_TITLES.get(n, n).split(" [")[0]
                                                          for n in spectrum.missing)
                    + ", which the encoder needs: enter them (the training-range centre to start with).")
        inputs = st.columns(len(spectrum.missing))
        defaults = explore_neighbours.conditional_defaults(view.run)
        for column, name in zip(inputs, spectrum.missing):
            low, high = view.run.training_range[name]
            conditional[name] = column.number_input(explore.COLUMN_TITLES.get(name, name), value=float(defaults[name]),
                                                    key=f"explore_upload_cp_{name}",
                                                    help=f"Training range {low:g} – {high:g}.")
    try:
        found, distances = explore_neighbours.upload_neighbours(view.run, view.data, spectrum, view.representation, int(k), conditional)
    except (embeddings.ProjectionError, DataError) as error:
        st.error(str(error), icon=":material/error:")
        return
    typical = typical_distance(str(view.record.path), view.stamp, view.representation)
    check = explore_neighbours.novelty(view.run, distances, typical, spectrum.flux, conditional)
    if check.unusual:
        st.warning(f"**{upload.name} is unlike this run's data**: {check.message()}. Its neighbours below are "
                   "the least distant objects, not similar ones; the model was not trained on such spectra.",
                   icon=":material/warning:")
    st.markdown(f"The {len(found)} objects nearest to **{upload.name}** in "
                f"{view.data.representations[view.representation]} (Euclidean distance)")
    show_neighbours(view, spectrum.flux, upload.name, found, distances)


def decoder_view(view: ExploreView, pick: int) -> None:
    """The decoder beside the picked star: what would it look like at another Teff / log g?"""
    st.markdown(f"#### {view.data.ids[pick]} through the decoder")
    own = explore_neighbours.decoder_values(view.run, view.data, pick)
    controls, chart = st.columns([1, 3])
    values = conditional_sliders(view.run.training_range, own, key="explore_cp_", star=f"{view.selection_owner}#{pick}",
                                 controls=controls, warnings=chart)
    try:
        original, generated, extrapolated = explore_neighbours.generated_at(view.run, view.data, pick, values)
    except (embeddings.ProjectionError, DataError) as error:
        st.error(str(error))
        return
    with chart:
        target = ", ".join(f"{explore.COLUMN_TITLES.get(k, k).split(' [')[0]} {v:g}" for k, v in values.items())
        figure = plots.spectrum_figure(view.data.wavelength, {"Original": original, "Generated": generated},
                                       {"Gen. − orig.": generated - original}, title=f"{view.data.ids[pick]} at {target}",
                                       extrapolation=extrapolated, meta={"values": values, "star": pick},
                                       uirevision="explore-decoder", height=420)
        st.plotly_chart(figure, key="explore_decoder_chart", config=plots.PLOTLY_CONFIG, theme=None)
