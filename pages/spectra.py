"""Spectra: disentangle stellar spectra from Teff and log g, and slide stars through the decoder.

UI only: widgets, charts and wording. Logic lives in astrocore.app_logic, background work in
astrocore.jobs, figures in astrocore.plots.
"""
import json

import streamlit as st

from astrocore import jobs
from astrocore.app import common as app_common
from astrocore.app import plots
from astrocore.app import spectra as app_spectra
from astrocore.app import uploads
from astrocore.app.widgets import conditional_sliders
from astrocore.data.dataset import LABEL_TITLES, DataError
from astrocore.runs import runs_dir

if not st.session_state.get("astrocore_app"):
    # Opened by URL before app.py ever ran in this server (Streamlit's pages/-folder mode): run the app
    # entry point, which sets up the navigation and then renders this page.
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"), run_name="__main__")
    st.stop()

MODES = {"mdat": "mdAT — one adversary per parameter (paper's best)", "at": "AT — one joint adversary",
         "noat": "noAT — no adversary (conditional autoencoder)"}
PRESETS = {"fast": "fast — minutes on a laptop CPU (improved recipe)",
           "paper-fast": "paper-fast — the paper's recipe, short schedule",
           "paper": "paper — the published sizes (200 epochs; for a GPU)"}
SCHEDULES = {"": "the preset's (constant)", "cosine": "cosine decay to 1 % over the run"}
CP_FEATURES = {"": "the preset's (fast: Fourier; paper: linear)", "linear": "linear (the paper)",
               "fourier": "linear + Fourier features"}
CONDITIONINGS = {"": "the preset's (inputs only)", "concat": "inputs only (the paper)",
                 "film": "inputs + every hidden layer (FiLM)",
                 "film-encoder": "FiLM in the encoder only"}
ENCODERS = {"": "the preset's (fast: polynomial; paper: MLP)", "mlp": "MLP (the paper)",
            "cp-polynomial": "linear in the spectrum, weights polynomial in Teff, log g ..."}
SHOW = ["Original", "Reconstruction", "Generated", "True"]


# ============================================================================ cached resources
@st.cache_resource(max_entries=6, show_spinner="Loading the model …")
def get_run(path: str, stamp: float):
    return app_common.load_run(path)


@st.cache_resource(max_entries=4, show_spinner="Preparing the spectra (cached on disk after the first time) …")
def get_dataset(source_json: str):
    return app_common.dataset_from_json(source_json)


@st.cache_resource(max_entries=4, show_spinner=False)
def get_renderer(source_json: str):
    return app_common.renderer_from_json(source_json)


@st.cache_data(max_entries=4000, show_spinner=False)
def true_flux(source_json: str, index: int, values_json: str):
    return app_spectra.true_spectrum(get_renderer(source_json), get_dataset(source_json).labels, index,
                               json.loads(values_json))


@st.cache_resource(max_entries=256, show_spinner=False)
def star_latent(path: str, stamp: float, source_json: str, index: int):
    return app_spectra.encode_star(get_run(path, stamp), get_dataset(source_json), index)


@st.cache_resource(max_entries=16, show_spinner=False)
def latent_limits(path: str, stamp: float):
    return app_spectra.latent_ranges(get_run(path, stamp))


@st.cache_data(max_entries=16, show_spinner="Projecting with PCA …")
def pca_coordinates(path: str, stamp: float, source_json: str, representation: str):
    return app_spectra.pca_coordinates(get_run(path, stamp), get_dataset(source_json), representation)


@st.cache_data(max_entries=16, show_spinner=False)
def hover_texts(path: str, stamp: float, source_json: str):
    run, dataset = get_run(path, stamp), get_dataset(source_json)
    return app_spectra.hover_texts(dataset, app_spectra.split_names(run, len(dataset)))


# ============================================================================ state helpers
def reset_star_state(index: int) -> None:
    """Point the sliders (and the latent editor) at star ``index``."""
    st.session_state.star = int(index)  # the sliders snap to its values (astrocore.ui_components)
    for key in [k for k in st.session_state.keys() if str(k).startswith("z_")]:
        del st.session_state[key]


def on_model_change() -> None:
    st.session_state.model_id = st.session_state.model_pick
    for key in [k for k in st.session_state.keys() if str(k).startswith(("cp_", "z_"))] + ["star", "star_pick"]:
        st.session_state.pop(key, None)


def clicked_star(event, chart: str) -> int | None:
    """The star index of a new click on an embedding chart (a selection persists across reruns, so
    each one is acted on once; later picks from the list are not overridden)."""
    points = ((event or {}).get("selection") or {}).get("points") or []
    if not points or points[0].get("customdata") is None:
        return None
    picked = points[0]["customdata"]
    picked = int(picked[0] if isinstance(picked, list) else picked)
    handled = st.session_state.setdefault("handled_clicks", {})
    if handled.get(chart) == picked:
        return None
    handled[chart] = picked
    return picked


def watch(run_id: str) -> None:
    watched = st.session_state.setdefault("watched_jobs", [])
    if run_id not in watched:
        watched.append(run_id)


# ============================================================================ background training
def training_card(status: dict, epochs, allow_cancel: bool = True, key: str = "") -> None:
    """Progress bar, loss curves and a cancel button for one training job."""
    state = status["state"]
    run_id = status["run_id"]
    folder = runs_dir() / run_id
    if state in ("starting", "running", "cancelling"):
        st.progress(status["fraction"], text=f"**{run_id}** · {state} · {app_common.progress_text(status, epochs)}")
        if allow_cancel and state != "cancelling":
            if st.button("Cancel training", key=f"cancel_{key}{run_id}", icon=":material/stop_circle:"):
                jobs.cancel(folder)
                st.toast(f"Stopping {run_id} …")
    elif state == "done":
        st.success(f"**{run_id}** finished in {status['elapsed']:.0f} s.", icon=":material/check_circle:")
    elif state == "cancelled":
        st.warning(f"**{run_id}** was cancelled ({status['message'] or 'stopped by the user'}).")
    elif state == "failed":
        st.error(f"**{run_id}** failed: {status['message']}")
        if status.get("log"):
            with st.expander("Last lines of the training log"):
                st.code(status["log"], language=None)
    curves, chance = app_common.job_loss_curves(folder)
    if curves:
        st.plotly_chart(plots.loss_figure(curves, chance, height=300), key=f"loss_{key}{run_id}",
                        config=plots.PLOTLY_CONFIG, theme=None)


def default_model_block(settings: dict) -> None:
    """First visit: train the default model in the background and show its progress."""
    folder = runs_dir() / settings["run_id"]
    status = jobs.job_status(folder)
    if status["state"] in ("none",):
        try:
            jobs.start_training(data=settings["data"], n_stars=settings["n_stars"], data_seed=settings["data_seed"],
                                mode=settings["mode"], conditional=settings["conditional"], preset=settings["preset"],
                                epochs=settings["epochs"], run_id=settings["run_id"], label="default model")
        except jobs.JobError:
            pass
        status = jobs.job_status(folder)
    data_text = ("the simulated APOGEE-like grid" if settings["data"] == "apogee" else "simulated RVS-like spectra")
    size = (f"{settings['n_stars']} chemical fingerprints × the Teff–log g grid" if settings["data"] == "apogee"
            else f"{settings['n_stars']} stars")
    st.info(f"**Welcome!** There is no trained model in `{runs_dir().resolve()}` yet, so a fast default mdAT model is "
            f"being trained in the background on {data_text} ({size}, {settings['epochs']} epochs). This takes about "
            "a minute or two on a laptop CPU and only happens once; the page switches to the model by itself. "
            "Meanwhile, look at the data in the **Data** tab.", icon=":material/school:")

    @st.fragment(run_every=1.0 if status["state"] not in jobs.TERMINAL_STATES else None)
    def progress():
        current = jobs.job_status(folder)
        if current["state"] == "done":
            st.rerun()
        training_card(current, settings["epochs"], key="default_")
        if current["state"] in ("failed", "cancelled"):
            if st.button("Train the default model again", icon=":material/refresh:"):
                jobs.start_training(data=settings["data"], n_stars=settings["n_stars"],
                                    data_seed=settings["data_seed"], mode=settings["mode"],
                                    conditional=settings["conditional"], preset=settings["preset"],
                                    epochs=settings["epochs"], run_id=settings["run_id"], label="default model")
                st.rerun()

    progress()


# ============================================================================ page
st.title("Spectra")
st.caption("Separate what Teff and log g do to a spectrum from what the star's chemistry does, then re-render "
           "any star at any Teff and log g through the decoder (GANDALF; Santoveña et al. 2024).")

records = app_common.finished_runs()
default_settings = app_common.default_model_settings()
run = None
record = None
if not records:
    default_model_block(default_settings)
else:
    by_id = {r.id: r for r in records}
    if st.session_state.get("model_id") not in by_id:
        st.session_state.model_id = app_common.choose_default_run(records).id
    st.session_state.model_pick = st.session_state.model_id
    top = st.columns([3, 2])
    top[0].selectbox("Model", list(by_id), key="model_pick", on_change=on_model_change,
                     format_func=lambda rid: app_common.run_label(by_id[rid]),
                     help="Finished runs in the runs folder; the Train tab adds more.")
    record = by_id[st.session_state.model_id]
    config = record.config
    top[1].caption(
        f"**{app_common.MODE_TITLES.get(config.get('mode'), '?')}** conditioned on "
        f"{', '.join(LABEL_TITLES.get(c, c) for c in config.get('conditional', []))} · latent {config.get('latent_dim')} "
        f"dims · {config.get('epochs')} epochs · trained {record.created[:16].replace('T', ' ')} UTC"
        + (f" in {record.metrics['train_seconds']:.0f} s" if 'train_seconds' in record.metrics else ""))
    try:
        run = get_run(str(record.path), app_common.run_stamp(record))
    except Exception as error:  # a damaged run folder must not break the page
        st.error(f"The model {record.id} could not be loaded: {error}")
        run = None

tabs = st.tabs(["Generate", "Data", "Train", "Evaluate"], key="spectra_tab", on_change="rerun")


# ---------------------------------------------------------------------------- Generate
def generate_tab() -> None:
    if run is None:
        st.info("The Generate view opens as soon as a model is ready.")
        return
    own_json = app_common.source_to_json(record.data)
    loaded_json = st.session_state.get("data_source")
    star_source = "model"
    if loaded_json and loaded_json != own_json:
        choice = st.radio("Stars from", ["the model's training data", "the data loaded in the Data tab"],
                          horizontal=True, key="star_source")
        if choice.startswith("the data loaded"):
            star_source = "loaded"
    source_json = own_json if star_source == "model" else loaded_json
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
    """Only the sliders and what they redraw live here, so a slider move reruns as little as possible."""
    run = get_run(run_path, stamp)
    dataset = get_dataset(source_json)
    star_values = app_spectra.star_conditionals(run, dataset.labels, star)
    controls, chart = st.columns([1, 3], gap="medium")
    values = conditional_sliders(run.training_range, star_values, key="cp_", star=f"{star}@{source_json}",
                                 controls=controls, warnings=chart)
    presets = plots.zoom_presets(run.wavelength)
    edited = None
    if use_edit:
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
    observed = ", ".join(f"{LABEL_TITLES.get(k, k).split(' [')[0]} {v:g}" for k, v in star_values.items())
    target = ", ".join(f"{LABEL_TITLES.get(k, k).split(' [')[0]} {v:g}" for k, v in values.items())
    star_id = dataset.labels["id"][star] if "id" in dataset.labels.colnames else star
    title = f"Star {star_id} (observed at {observed}) → generated at <b>{target}</b>"
    if edited is not None:
        title += " · edited latent"
    figure = plots.spectrum_figure(run.wavelength, traces, residuals, xrange=presets[zoom], title=title,
                                   extrapolation=view.extrapolation, meta={"values": values, "star": star},
                                   uirevision=f"{zoom}")
    with chart:
        st.plotly_chart(figure, key="spectrum_chart", config=plots.PLOTLY_CONFIG, theme=None)
        notes = []
        if truth is not None:
            notes.append(f"RMS(generated − true) = {app_spectra.rms(view.generated, truth):.4f}")
        notes.append(f"RMS(reconstruction − original) = {app_spectra.rms(view.reconstruction, view.original):.4f}")
        if get_renderer(source_json) is None:
            notes.append("no true spectrum: these data have no simulator behind them")
        st.caption(" · ".join(notes) + " (flux units)")
        downloads = st.columns(2)
        stem = app_spectra.export_name(run.id, f"star{star}-" + "-".join(f"{k}{v:g}" for k, v in values.items()), "")[:-1]
        single = lambda: app_spectra.single_spectrum_dataset(run, view, dataset)  # noqa: E731
        downloads[0].download_button("Generated spectrum · FITS", data=lambda: app_spectra.fits_bytes(single()),
                                     file_name=f"{stem}.fits", mime="application/fits", on_click="ignore",
                                     icon=":material/download:", width="stretch")
        downloads[1].download_button("Generated spectrum · CSV", data=lambda: app_spectra.csv_bytes(single()),
                                     file_name=f"{stem}.csv", mime="text/csv", on_click="ignore",
                                     icon=":material/download:", width="stretch")


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


# ---------------------------------------------------------------------------- Data
def data_tab() -> None:
    st.markdown("Choose the spectra to look at and to train on. Simulated data are cached on disk, so a second "
                "visit is instant.")
    kind = st.radio("Source", ["APOGEE-like simulator", "RVS-like simulator", "Payne emulator (.npz)",
                               "Your spectra (FITS, CSV, zipped GANDALF folder)"], key="data_kind", horizontal=True)
    source = None
    if kind.endswith("simulator"):
        generator = "apogee" if kind.startswith("APOGEE") else "rvs"
        columns = st.columns(3)
        if generator == "apogee":
            n = columns[0].number_input("Chemical fingerprints", 2, 200, default_settings["n_stars"]
                                        if default_settings["data"] == "apogee" else 24, key="n_apogee",
                                        help="Each fingerprint (a star's abundances) is rendered on Teff 3200–6000 K "
                                             "(step 200) × log g 0–2.6 (step 0.2): 210 spectra per fingerprint.")
            columns[2].caption(f"{n * 210} spectra of 7214 pixels (H band, 15150–16950 Å, R = 22 500).")
        else:
            n = columns[0].number_input("Stars", 20, 60000, 2000, step=500, key="n_rvs",
                                        help="Random Teff 2600–8000 K, log g −0.5–5.5, [Fe/H], [α/Fe].")
            columns[2].caption(f"{n} spectra of 2400 pixels (8460–8700 Å, R = 11 500).")
        seed = columns[1].number_input("Seed", 0, 10**6, 0, key=f"seed_{generator}")
        source = app_common.simulator_source(generator, n, seed)
    elif kind.startswith("Payne"):
        path = st.text_input("Path to an emulator .npz on this machine", key="payne_path",
                             placeholder="/path/to/nn_apogee_4label.npz")
        upload = st.file_uploader("… or upload one", key="payne_upload")
        columns = st.columns(3)
        n_random = columns[0].number_input("Chemical fingerprints", 1, 200, 20, key="payne_n",
                                           help="Chemistries drawn from the emulator's label ranges, each rendered on "
                                                "the giant grid Teff 3600–6000 K × log g 0.4–2.6 (156 spectra each).")
        seed = columns[1].number_input("Seed", 0, 10**6, 0, key="payne_seed")
        columns[2].caption("The Payne (Ting et al. 2019) renders physics-grade APOGEE spectra on the 7214-pixel grid; "
                           "un-normalised emulators are continuum-normalised.")
        try:
            if upload is not None:
                stored = uploads.store_payne_upload(upload.name, upload.getvalue())
                source = app_common.payne_source(stored, n_random, seed)
            elif path.strip():
                uploads.check_payne(path.strip())
                source = app_common.payne_source(path.strip(), n_random, seed)
        except uploads.UploadError as error:
            st.error(str(error), icon=":material/error:")
    else:
        upload = st.file_uploader("Upload spectra: an astrocore/APOGEE FITS file, a FITS or CSV table (one "
                                  "flux_<wavelength> column per pixel), a .npz, or a zipped GANDALF folder "
                                  "(X.npy, params.npy, ids.npy, axis_labels.npy, wavelength.npy)", key="spectra_upload")
        path = st.text_input("… or a path to a file or folder on this machine", key="spectra_path")
        examples = sorted(p.name for p in uploads.example_files())
        if examples:
            st.caption("Example files to try: " + ", ".join(f"`assets/{name}`" for name in examples))
        try:
            if upload is not None:
                _, source = uploads.load_uploaded_spectra(upload.name, upload.getvalue())
            elif path.strip():
                source = uploads.local_spectra_source(path.strip())
        except uploads.UploadError as error:
            st.error(str(error), icon=":material/error:")
            source = None
    if source is None:
        return
    source_json = app_common.source_to_json(source)
    try:
        dataset = get_dataset(source_json)
    except (DataError, FileNotFoundError, OSError, ValueError) as error:
        st.error(f"These data could not be loaded: {error}", icon=":material/error:")
        return
    st.session_state.data_source = source_json
    summary = app_common.dataset_summary(dataset)
    metrics = st.columns(4)
    metrics[0].metric("Spectra", f"{summary['n_objects']:,}")
    metrics[1].metric("Pixels", f"{summary['n_pixels']:,}")
    metrics[2].metric("Wavelength [Å]", f"{summary['wavelength'][0]:.0f} – {summary['wavelength'][1]:.0f}")
    metrics[3].metric("Chemical fingerprints" if summary["n_fingerprints"] else "Pixel step [Å]",
                      summary["n_fingerprints"] or f"{summary['pixel_step']:.3g}")
    left, right = st.columns([2, 3])
    left.markdown(f"**Labels** · {app_common.source_label(source)}")
    left.dataframe(summary["labels"], hide_index=True, width="stretch",
                   column_config={"min": st.column_config.NumberColumn(format="%.3g"),
                                  "max": st.column_config.NumberColumn(format="%.3g")})
    index = app_common.example_indices(dataset, 4)
    names = [app_common.describe_object(dataset.labels, i) for i in index]
    right.plotly_chart(plots.example_spectra_figure(dataset.wavelength, dataset.spectra[index], names),
                       key="examples_chart", config=plots.PLOTLY_CONFIG, theme=None)
    if run is not None and source_json != app_common.source_to_json(record.data):
        problem = uploads.compatibility_error(dataset, run)
        if problem:
            st.warning(f"The current model cannot encode these spectra: {problem}")
        else:
            st.success("These spectra match the current model's wavelength grid: pick them as stars in **Generate**.")
    st.caption("The **Train** tab trains on these data.")


# ---------------------------------------------------------------------------- Train
def train_tab() -> None:
    source_json = st.session_state.get("data_source") or (
        app_common.source_to_json(record.data) if record is not None and record.data.get("kind") in ("simulator", "file")
        else app_common.source_to_json(app_common.simulator_source(default_settings["data"], default_settings["n_stars"], 0)))
    source = json.loads(source_json)
    st.markdown(f"**Training data:** {app_common.source_label(source)} (change it in the **Data** tab).")
    try:
        dataset = get_dataset(source_json)
        available = [n for n in app_common.STANDARD_LABELS if n in dataset.labels.colnames]
    except (DataError, FileNotFoundError, OSError, ValueError) as error:
        st.error(f"These data could not be loaded: {error}")
        return
    with st.form("train_form", border=True):
        columns = st.columns(3)
        mode = columns[0].radio("Mode", list(MODES), format_func=MODES.get, key="train_mode")
        conditional = columns[1].multiselect("Conditional parameters", available,
                                             default=[n for n in ("teff", "logg") if n in available],
                                             format_func=lambda n: LABEL_TITLES.get(n, n), key="train_cp",
                                             help="What the decoder is given and the adversaries remove from z.")
        preset = columns[2].selectbox("Preset", list(PRESETS), format_func=PRESETS.get, key="train_preset")
        columns = st.columns(4)
        epochs = columns[0].number_input("Epochs (0: the preset's)", 0, 1000, 0, key="train_epochs")
        lambdas = columns[1].text_input("λ (one, or one per parameter)", "", key="train_lambdas",
                                        placeholder="preset default", help="Weight of the adversarial term, e.g. "
                                        "0.05 or '0.05, 0.02'. The paper uses 0.001 with its recipe.")
        latent = columns[2].number_input("Latent dimensions (0: the preset's)", 0, 256, 0, key="train_latent")
        seed = columns[3].number_input("Seed", 0, 10**6, 0, key="train_seed")
        columns = st.columns(4)
        schedule = columns[0].selectbox(
            "Learning rate", list(SCHEDULES), format_func=SCHEDULES.get, key="train_schedule",
            help="A constant rate, or one that decays to 1 % of it over the run (see the README for what it "
                 "changed on the APOGEE-like grid).")
        refit = columns[1].number_input(
            "Decoder refit epochs", 0, 1000, value=None, placeholder="preset default", key="train_refit",
            help="After training, the encoder is frozen and the decoder alone is refitted to the training "
                 "spectra for this many epochs: the latent stays as trained, reconstructions improve. 0: off.")
        cp_features = columns[2].selectbox(
            "Conditional inputs", list(CP_FEATURES), format_func=CP_FEATURES.get, key="train_cp_features",
            help="How the encoder and decoder see Teff, log g ...: their standardised values (the paper), or also "
                 "sines and cosines of their position in the training range, which make a spectrum's non-linear "
                 "response easier to learn (see the README for what it changes).")
        conditioning = columns[3].selectbox(
            "Conditioning", list(CONDITIONINGS), format_func=CONDITIONINGS.get, key="train_conditioning",
            help="Where Teff, log g ... enter the encoder and decoder: beside the spectrum or latent at the input "
                 "(the paper), or there and also scaling and shifting every hidden layer (FiLM), so a line's "
                 "response to an abundance can grow or fade with Teff and log g. FiLM needs the MLP encoder; with "
                 "it, on the APOGEE-like grid, FiLM halved mdAT's reconstruction error but, on two of three "
                 "splits, kept less [alpha/Fe] (README).")
        columns = st.columns(4)
        encoder = columns[0].selectbox(
            "Encoder", list(ENCODERS), format_func=ENCODERS.get, key="train_encoder",
            help="How the encoder reads a spectrum: the paper's MLP, or a linear read-out of its leading principal "
                 "components whose weights are quadratic polynomials of the conditional parameters, which reads "
                 "the abundances of unseen stars far better (see the README).")
        noise_snr = columns[1].number_input(
            "Train with noise at S/N (0: none)", 0.0, 10000.0, 0.0, step=10.0, key="train_noise_snr",
            help="Adds Gaussian noise of 1/(S/N) in continuum units to the spectra the encoder reads in training "
                 "(not to the reconstruction target). A model trained on noise-free spectra reads features "
                 "that noise would swamp: to encode real or noisy spectra, train at their S/N.")
        twin_codes = columns[2].number_input(
            "Twin-code steps", 0, 100000, value=None, placeholder="preset default", key="train_twin_codes",
            help="After training, each training chemistry gets one latent, optimised through the frozen decoder "
                 "to reconstruct all its spectra, and the polynomial encoder is refitted to read it: the encoder "
                 "then reads nothing but the chemistry, and reconstructions improve (README). Needs the "
                 "polynomial encoder and twins (one chemistry at several Teff, log g) in the data. 0: off.")
        submitted = st.form_submit_button("Start training in the background", type="primary",
                                          icon=":material/play_arrow:")
    if submitted:
        try:
            parsed = app_spectra.parse_lambdas(lambdas, conditional) if lambdas.strip() else None
            if not conditional:
                raise ValueError("Choose at least one conditional parameter (e.g. Teff and log g).")
            overrides = {"latent_dim": int(latent)} if latent else {}
            if schedule:
                overrides["lr_schedule"] = schedule
            if refit is not None:
                overrides["decoder_refit_epochs"] = int(refit)
            if cp_features:
                overrides["cp_features"] = cp_features
            if conditioning:
                overrides["conditioning"] = conditioning
            if encoder:
                overrides["encoder"] = encoder
            if noise_snr:
                overrides["input_noise"] = app_spectra.input_noise_for_snr(noise_snr)
            if twin_codes is not None:
                overrides["twin_code_steps"] = int(twin_codes)
            app_spectra.validate_training(mode, conditional, preset, parsed, epochs or None, overrides)
            if parsed is not None:
                overrides["lambdas"] = list(parsed)
            arguments = app_common.cli_data_arguments(source)
            run_id = jobs.start_training(**arguments, mode=mode, conditional=tuple(conditional), preset=preset,
                                         epochs=epochs or None, seed=int(seed), overrides=overrides)
            watch(run_id)
            st.success(f"Started **{run_id}**. Its progress is below; you can keep using the page, and a reload "
                       "does not lose it.", icon=":material/rocket_launch:")
        except (ValueError, jobs.JobError) as error:
            st.error(str(error), icon=":material/error:")
    jobs_panel()


def jobs_panel() -> None:
    statuses = jobs.training_jobs()
    watched = set(st.session_state.get("watched_jobs", []))
    visible = [s for s in statuses if s["state"] not in jobs.TERMINAL_STATES or s["run_id"] in watched]
    active = any(s["state"] not in jobs.TERMINAL_STATES for s in visible)

    @st.fragment(run_every=1.5 if active else None)
    def panel():
        current = [jobs.job_status(runs_dir() / s["run_id"]) for s in visible]
        finished_now = [s for s, old in zip(current, visible)
                        if s["state"] == "done" and old["state"] not in jobs.TERMINAL_STATES]
        if finished_now:
            st.rerun()  # refresh the model list
        if not current:
            st.caption("No training in progress. Runs started here (or with `astrocore train`) appear in the model "
                       "list when they finish.")
            return
        st.markdown("#### Training jobs")
        for status in current:
            with st.container(border=True):
                settings = next((s.get("settings", {}) for s in visible if s["run_id"] == status["run_id"]), {})
                training_card(status, settings.get("epochs"), key="panel_")
                if status["state"] == "done" and st.button("Open in Generate", key=f"open_{status['run_id']}"):
                    st.session_state.model_id = status["run_id"]
                    on_model_change_to(status["run_id"])
                    st.rerun()
        with st.expander("The same commands on the command line"):
            for status in statuses[:5]:
                command = next((s.get("command") for s in statuses if s["run_id"] == status["run_id"]), None)
                if command:
                    st.code(app_spectra.cli_command_text(command), language="bash")

    panel()


def on_model_change_to(run_id: str) -> None:
    for key in [k for k in st.session_state.keys() if str(k).startswith(("cp_", "z_"))] + ["star", "star_pick"]:
        st.session_state.pop(key, None)
    st.session_state.model_id = run_id


# ---------------------------------------------------------------------------- Evaluate
def evaluate_tab() -> None:
    if run is None:
        st.info("Evaluation needs a trained model.")
        return
    all_records = app_common.finished_runs()
    by_id = {r.id: r for r in all_records}
    same = [r.id for r in all_records if r.data == record.data and r.config.get("conditional") == record.config.get(
        "conditional")]
    chosen = st.multiselect("Runs to compare (same data and conditional parameters make a fair table)", list(by_id),
                            default=same[:4], key="eval_runs", format_func=lambda rid: app_common.run_label(by_id[rid]))
    if not chosen:
        return
    statuses = {rid: jobs.job_status(by_id[rid].path, "evaluate") for rid in chosen}
    missing = [rid for rid in chosen if jobs.read_evaluation(by_id[rid].path) is None
               and statuses[rid]["state"] not in ("running", "starting")]
    if missing and st.button(f"Evaluate {len(missing)} run(s) in the background", icon=":material/science:",
                             help="MLP and k-NN probes of each label from z and from X, the chemical-twins score, "
                                  "reconstruction and generation errors. Takes several minutes per run on a laptop CPU."):
        for rid in missing:
            try:
                jobs.start_evaluation(by_id[rid].path)
            except jobs.JobError as error:
                st.warning(str(error))
        st.rerun()
    running = [rid for rid in chosen if jobs.job_status(by_id[rid].path, "evaluate")["state"] == "running"]

    @st.fragment(run_every=2.0 if running else None)
    def results():
        current = {rid: jobs.job_status(by_id[rid].path, "evaluate") for rid in chosen}
        still = [rid for rid, s in current.items() if s["state"] == "running"]
        if running and not still:
            st.rerun()
        for rid in still:
            st.progress(0.5, text=f"Evaluating {rid} … {current[rid]['elapsed']:.0f} s")
        for rid, status in current.items():
            if status["state"] == "failed":
                st.error(f"Evaluation of {rid} failed: {status['message']}")
        evaluated = [(by_id[rid], jobs.read_evaluation(by_id[rid].path)) for rid in chosen]
        evaluated = [(r, e) for r, e in evaluated if e]
        if not evaluated:
            st.caption("No evaluation yet.")
            return
        knn = st.toggle("k-NN probe instead of MLP", key="eval_knn",
                        help="The paper uses an MLP; a k-NN probe is a second opinion.")
        table = app_spectra.r2_comparison(evaluated, "r2_knn" if knn else "r2")
        st.markdown("#### R² of predicting each label — this app vs. Santoveña et al. (2024)")
        st.caption("Lower is better for the conditioned labels (the latent should not know them), higher for the "
                   "others (the latent should keep the chemistry). 'paper' columns are the published numbers for the "
                   "comparable grid; they are blank when the paper has no such grid. A '–' in this app's "
                   "columns: the label does not vary among the held-out stars (e.g. one chemistry), so it has "
                   "no R².")
        st.dataframe(app_spectra.formatted(table), width="stretch")
        st.plotly_chart(plots.r2_figure(table), key="r2_chart", config=plots.PLOTLY_CONFIG, theme=None)
        st.download_button("R² table · CSV", table.to_csv().encode(), file_name="r2_comparison.csv",
                           mime="text/csv", on_click="ignore")
        twins = app_spectra.twins_table(evaluated)
        if not twins.empty:
            st.markdown("#### Chemical twins")
            st.caption("Fraction of each held-out star's 10 nearest neighbours (at other Teff/log g) that share its "
                       "chemical fingerprint. Higher means the representation recognises the same chemistry at a "
                       "different Teff and log g.")
            st.dataframe(twins, hide_index=True, column_config={
                "twins top-10": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.3f")})
        st.dataframe(app_spectra.evaluation_metrics_table(evaluated), hide_index=True, width="stretch")
        by_parameter = app_spectra.recon_by_parameter_table(evaluated)
        if not by_parameter.empty:
            title = LABEL_TITLES.get(by_parameter["parameter"].iloc[0], by_parameter["parameter"].iloc[0])
            st.markdown(f"#### Reconstruction error across {title}")
            st.caption("Mean squared error of held-out reconstructions in bins of the first conditional "
                       "parameter (continuum-normalised flux): where across the grid a model loses detail.")
            st.plotly_chart(plots.recon_by_parameter_figure(by_parameter), key="recon_by_cp_chart",
                            config=plots.PLOTLY_CONFIG, theme=None)
            st.download_button("Reconstruction error by bin · CSV", by_parameter.to_csv(index=False).encode(),
                               file_name="recon_by_parameter.csv", mime="text/csv", on_click="ignore")

    results()
    embedding_section()


def embedding_section() -> None:
    st.markdown("#### Embeddings of X and z")
    source_json = app_common.source_to_json(record.data)
    dataset = get_dataset(source_json)
    columns = st.columns(3)
    representation = columns[0].radio("Representation", list(app_spectra.REPRESENTATIONS), key="emb_rep",
                                      format_func=app_spectra.REPRESENTATIONS.get, horizontal=True)
    method = columns[1].radio("Method", list(app_spectra.EMBEDDING_METHODS), key="emb_method",
                              format_func=app_spectra.EMBEDDING_METHODS.get, horizontal=True)
    colour = columns[2].selectbox("Colour by", app_spectra.colour_options(dataset), key="emb_colour",
                                  format_func=lambda n: LABEL_TITLES.get(n, n))
    stamp = app_common.run_stamp(record)
    if method == "pca":
        coordinates = pca_coordinates(str(record.path), stamp, source_json, representation)
    else:
        coordinates = app_spectra.read_embedding(record.path, representation, method)
        name = f"embed-{representation}-{method}"
        status = jobs.job_status(record.path, name)
        if coordinates is None:
            if status["state"] == "running":
                @st.fragment(run_every=2.0)
                def wait_embedding():
                    current = jobs.job_status(record.path, name)
                    if current["state"] != "running":
                        st.rerun()
                    st.progress(0.5, text=f"Computing {app_spectra.EMBEDDING_METHODS[method]} of "
                                          f"{app_spectra.REPRESENTATIONS[representation]} … {current['elapsed']:.0f} s")
                wait_embedding()
                return
            if status["state"] == "failed":
                st.error(f"The embedding failed: {status['message']}")
            if st.button(f"Compute {app_spectra.EMBEDDING_METHODS[method]} in the background", icon=":material/hub:",
                         help="Cached in the run folder; openTSNE keeps the best of its runs."):
                jobs.start_embedding(record.path, representation, method)
                st.rerun()
            return
    split = app_spectra.split_names(run, len(dataset))
    values = split if colour == "split" else dataset.labels[colour]
    figure = plots.embedding_figure(coordinates, values, colour, method,
                                    hover=hover_texts(str(record.path), stamp, source_json),
                                    selected=st.session_state.get("star"), categorical=colour in ("split",),
                                    title=f"{app_spectra.EMBEDDING_METHODS[method].split(' ')[0]} of "
                                          f"{app_spectra.REPRESENTATIONS[representation]}")
    event = st.plotly_chart(figure, key="embedding_chart", on_select="rerun", selection_mode="points",
                            config=plots.PLOTLY_CONFIG, theme=None)
    picked = clicked_star(event, "embedding_chart")
    if picked is not None and picked != st.session_state.get("star"):
        reset_star_state(picked)
        st.session_state.star_dataset = source_json
        st.toast(f"Selected {app_common.describe_object(dataset.labels, picked)} — open **Generate** to slide it.")
    st.caption("Click a point to select that star for the Generate tab.")


for tab, render_tab in zip(tabs, (generate_tab, data_tab, train_tab, evaluate_tab)):
    with tab:
        if tab.open is not False:  # only the open tab runs (lazy tabs)
            render_tab()
