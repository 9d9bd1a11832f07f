"""The Spectra page's Streamlit pieces shared by its tabs: cached runs and data (keyed by run id
and data source, since Streamlit cannot hash torch objects), the star-selection state and the
background-training card."""
import json

import streamlit as st

from .. import jobs
from ..runs import read_json, runs_dir
from . import common as app_common
from . import plots
from . import spectra as app_spectra

MODES = {"mdat": "mdAT — one adversary per parameter (paper's best)", "at": "AT — one joint adversary",
         "noat": "noAT — no adversary (conditional autoencoder)"}
PRESETS = {"fast": "fast — minutes on a laptop CPU (improved recipe)",
           "fast-no-twins": "fast-no-twins — for data without repeated chemistries (no twin terms)",
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
        twins = (read_json(folder / "run.json") or {}).get("metrics", {}).get("twins")
        st.success(f"**{run_id}** finished in {status['elapsed']:.0f} s"
                   + (f" · twin terms {twins}." if twins else "."), icon=":material/check_circle:")
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
    phases = app_spectra.training_phases(settings["preset"], settings["epochs"])
    st.info(f"**Welcome!** There is no trained model in `{runs_dir().resolve()}` (the model shipped with astrocore "
            f"is switched off or was removed), so a default mdAT model is being trained in the background on "
            f"{data_text} ({size}): {phases}. The bar below shows each phase; this happens once and the page "
            "switches to the model by itself. Meanwhile, look at the data in the **Data** tab.",
            icon=":material/school:")

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
