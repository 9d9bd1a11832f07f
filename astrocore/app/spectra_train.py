"""The Spectra page's Data and Train tabs: load or simulate spectra, train disentanglers in the
background."""
import json

import streamlit as st

from .. import jobs
from ..data.names import label_title
from ..data.dataset import DataError
from ..methods.disentangle.config import DisentanglerConfig, preset_for_data
from ..runs import runs_dir
from . import common as app_common
from . import plots
from . import spectra as app_spectra
from . import uploads
from .spectra_state import (CONDITIONINGS, CP_FEATURES, ENCODERS, MODES, PRESETS, SCHEDULES, get_dataset, training_card,
                            watch)


# ---------------------------------------------------------------------------- Data
def data_tab(run, record, default_settings: dict) -> None:
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
            warning = app_spectra.upload_novelty(run, dataset)
            if warning:
                st.warning(warning, icon=":material/warning:")
    st.caption("The **Train** tab trains on these data.")


# ---------------------------------------------------------------------------- Train
def train_tab(run, record, default_settings: dict) -> None:
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
                                             format_func=label_title, key="train_cp",
                                             help="What the decoder is given and the adversaries remove from z.")
        # Data whose spectra share no known chemistry (no fingerprint column) cannot run the twin
        # terms: their default is the recipe without them (the CLI maps "fast" the same way).
        suggested = preset_for_data("fast", dataset.labels.colnames)
        preset = columns[2].selectbox("Preset", list(PRESETS), index=list(PRESETS).index(suggested),
                                      format_func=PRESETS.get, key="train_preset")
        sizes = ", ".join(str(size) for size in DisentanglerConfig.preset(preset).latent_candidates)
        if suggested != "fast":
            columns[2].caption("No fingerprint column: no two spectra are known to share a chemistry, so the "
                               "twin terms are off (fast-no-twins)."
                               + (f" It trains one model per latent size ({sizes}) and keeps the size chosen on "
                                  "the validation stars, unless you set the latent dimensions below." if sizes else ""))
        columns = st.columns(4)
        epochs = columns[0].number_input("Epochs (0: the preset's)", 0, 1000, 0, key="train_epochs")
        lambdas = columns[1].text_input("λ (one, or one per parameter)", "", key="train_lambdas",
                                        placeholder="preset default", help="Weight of the adversarial term, e.g. "
                                        "0.05 or '0.05, 0.02'. The paper uses 0.001 with its recipe.")
        latent = columns[2].number_input("Latent dimensions (0: the preset's)", 0, 256, 0, key="train_latent",
                                         help="0 keeps the preset's" + (f": it chooses among {sizes} on the "
                                              "validation stars" if sizes else "") + ". Any other value is trained "
                                              "as given.")
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
