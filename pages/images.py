"""Self-supervised images: pre-train on cutouts by predicting their magnitudes, classify from few
labels, and upload a cutout. Widgets only; the logic is in astrocore.app.images."""
import streamlit as st

from astrocore import jobs
from astrocore.app import images as logic
from astrocore.app.common import load_run, run_stamp
from astrocore.data.dataset import DataError
from astrocore.data.simulators.cutouts import LABEL_SETS
from astrocore.methods.ssl.config import PRETEXT_MIN_STEPS, PRETEXT_OBJECTIVES
from astrocore.methods.ssl.imagenet import imagenet_status, imagenet_weights_path
from astrocore.runs import runs_dir

if not st.session_state.get("astrocore_app"):
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"), run_name="__main__")
    st.stop()


@st.cache_resource(max_entries=4, show_spinner=False)
def get_run(path: str, stamp: float):
    return load_run(path)


@st.cache_data(max_entries=8, show_spinner="Drawing cutouts with GalSim ...")
def get_preview(kind: str, n: int, seed: int, survey: str):
    return logic.preview_cutouts(kind, n, seed, survey)


@st.cache_resource(max_entries=2, show_spinner="Rebuilding the run's cutouts ...")
def get_run_data(path: str, stamp: float):
    return get_run(path, stamp).dataset()


st.title("Self-supervised images")
st.caption("Pre-train a CNN on unlabelled multi-band cutouts by predicting their magnitudes (measured from the "
           "images), then classify stars, galaxies, quasars, mergers and morphologies from few labels "
           "(Martinazzo, Espadoto & Hirata 2020). Cutouts are in image units of zero point 30.")
records = logic.ssl_runs()
tabs = st.tabs(["Upload", "Browse", "Train", "Results"], key="images_tab", on_change="rerun")

# ============================================================================ upload
with tabs[0]:
    if tabs[0].open is not False:
        candidates = records["downstream"] + records["pretext"]
        if not candidates:
            st.info("No SSL run yet: train a pretext run and a classifier in the Train tab "
                    "(or `astrocore train ssl --stage pretext`).")
        else:
            by_id = {r.id: r for r in candidates}
            chosen = st.selectbox("Model", list(by_id), format_func=lambda rid: logic.run_title(by_id[rid]),
                                  key="images_model")
            record = by_id[chosen]
            run = get_run(str(record.path), run_stamp(record))
            st.caption(f"Expects {len(run.bands)} bands ({', '.join(run.bands)}) of at least {run.size} x {run.size} "
                       "pixels: a FITS file with one extension per band or a cube; PNG/JPEG only for 3-band models. "
                       "Several files give a table.")
            uploads = st.file_uploader("Cutout files", type=logic.UPLOAD_TYPES, accept_multiple_files=True,
                                       key="images_uploads")
            if st.button("Classify the example cutout", key="images_example"):
                st.session_state.images_files = logic.example_files()
            if uploads:
                st.session_state.images_files = [(u.name, u.getvalue()) for u in uploads]
            files = st.session_state.get("images_files") or []
            if files:
                try:
                    table, errors = logic.classify_uploads(run, files)
                except DataError as error:
                    table, errors = None, [str(error)]
                for message in errors:
                    st.error(message)
                if table is not None:
                    st.dataframe(table, hide_index=True)
                    st.download_button("Download the table (CSV)", table.to_csv(index=False), "classified_cutouts.csv",
                                       "text/csv", key="images_download")
                    pick = st.selectbox("Object", range(len(table)), format_func=lambda i: table["name"][i],
                                        key="images_pick")
                    row = table.iloc[pick]
                    columns = st.columns(2)
                    if run.stage == "downstream":
                        columns[0].plotly_chart(logic.probability_figure(row, run.classes), key="images_proba")
                    if f"mag_{run.bands[0]}" in table.columns:
                        columns[1].plotly_chart(logic.magnitude_figure(row, run.bands), key="images_mags")
                    if st.toggle("Show its nearest neighbours in feature space", key="images_show_neighbours"):
                        data = get_run_data(str(record.path), run_stamp(record))
                        st.plotly_chart(logic.cutout_grid(data, logic.neighbour_rows(row),
                                                          title="Nearest neighbours (training data of the run)"),
                                        key="images_neighbours")

# ============================================================================ browse
with tabs[1]:
    if tabs[1].open is not False:
        top = st.columns(4)
        kind = top[0].selectbox("Set", ["unlabelled", *LABEL_SETS], key="browse_kind")
        survey = top[1].selectbox("Survey", ["splus", "sdss"], key="browse_survey",
                                  format_func={"splus": "S-PLUS (12 bands, 0.55\")", "sdss": "SDSS (ugriz, 0.396\")"}.get)
        n = top[2].number_input("Cutouts", 8, 96, 24, step=8, key="browse_n")
        seed = top[3].number_input("Seed", 0, 10_000, 0, key="browse_seed")
        preview = get_preview(kind, int(n), int(seed), survey)
        st.plotly_chart(logic.cutout_grid(preview, title="g, r, i colour composites"), key="browse_grid")
        index = st.slider("Cutout", 0, len(preview) - 1, 0, key="browse_index")
        labels = preview.labels[index]
        st.caption(f"{labels['morphology']} · r = {labels['r_mag']:.2f} mag · z = {labels['redshift']:.3f} · "
                   f"seeing {labels['seeing_fwhm']:.2f}\"")
        st.plotly_chart(logic.band_strip(preview.images[index], preview.bands, "Every band (each its own stretch)"),
                        key="browse_bands")
        table = preview.labels.to_pandas()
        st.download_button("Download these labels (CSV)", table.to_csv(index=False), "cutout_labels.csv", "text/csv",
                           key="browse_download")

# ============================================================================ train
with tabs[2]:
    if tabs[2].open is not False:
        root = runs_dir()
        left, right = st.columns(2)
        with left.form("pretext_form"):
            st.subheader("Pretext (unlabelled)")
            objective = st.selectbox("Objective", PRETEXT_OBJECTIVES, key="train_objective")
            n_objects = st.number_input("Simulated cutouts", 200, 50_000, 4000, step=200, key="train_n_pretext")
            epochs = st.number_input("Epochs", 1, 200, 30, key="train_epochs",
                                     help=f"More when the cutouts are few: with a magnitude target the network takes "
                                          f"at least {PRETEXT_MIN_STEPS} optimiser steps, which its features need.")
            st.caption(f"Targets: {logic.pretext_targets_text()} per band, measured from the images "
                       "(contrastive: none, two augmented views of each cutout).")
            if st.form_submit_button("Train the pretext network"):
                st.session_state.images_job = jobs.start_method_training(
                    "ssl", logic.pretext_arguments(n_objects, objective, epochs), runs_root=root, label="pretext")
        with right.form("downstream_form"):
            st.subheader("Downstream (labelled)")
            name = st.selectbox("Label set", list(LABEL_SETS), index=1, key="train_set")
            schemes = logic.available_schemes()
            scheme = st.selectbox("Scheme", list(schemes), format_func=schemes.get, key="train_scheme")
            n_labels = st.number_input("Labels (0 = all)", 0, 50_000, 100, step=100, key="train_labels")
            pretexts = {r.id: str(r.path) for r in records["pretext"]}
            base = st.selectbox("Pretext run", list(pretexts) or ["(none yet)"], key="train_pretext")
            if st.form_submit_button("Train the classifier"):
                try:
                    arguments = logic.downstream_arguments(name, scheme, int(n_labels) or None, pretexts.get(base))
                    st.session_state.images_job = jobs.start_method_training("ssl", arguments, runs_root=root,
                                                                             label="downstream")
                except DataError as error:
                    st.error(str(error))
        if imagenet_weights_path() is None:
            st.caption(imagenet_status())

        @st.fragment(run_every=1.0)
        def job_progress():
            job = st.session_state.get("images_job")
            if not job:
                return
            status = jobs.job_status(root / job)
            st.progress(status["fraction"], text=f"{job}: {status['state']} "
                        + " ".join(f"{k}={v:.3g}" for k, v in status["metrics"].items() if isinstance(v, float)))
            if status["state"] in ("failed", "cancelled"):
                st.error(status["message"] or status["log"])
            elif status["state"] == "running" and st.button("Cancel", key="train_cancel"):
                jobs.cancel(root / job)

        job_progress()

# ============================================================================ results
with tabs[3]:
    if tabs[3].open is not False:
        if records["pretext"]:
            by_id = {r.id: r for r in records["pretext"]}
            chosen = st.selectbox("Pretext run", list(by_id), format_func=lambda rid: logic.run_title(by_id[rid]),
                                  key="results_pretext")
            run = get_run(str(by_id[chosen].path), run_stamp(by_id[chosen]))
            st.plotly_chart(logic.residual_figure(run), key="results_residuals")
            table = logic.pretext_table(run)
            st.dataframe(table, hide_index=True)
            st.download_button("Download (CSV)", table.to_csv(index=False), "pretext_per_band.csv", "text/csv",
                               key="results_pretext_download")
        accuracy = logic.accuracy_table(records["downstream"])
        if len(accuracy):
            st.subheader("Classifiers")
            st.dataframe(accuracy, hide_index=True)
            st.download_button("Download (CSV)", accuracy.to_csv(index=False), "classifiers.csv", "text/csv",
                               key="results_accuracy_download")
        bench = logic.read_bench()
        if bench:
            st.subheader("Low-data curves (benchmarks/ssl_fast.json)")
            curves = logic.bench_curves(bench)
            name = st.selectbox("Label set", logic.curve_sets(curves), key="results_bench_set")
            st.plotly_chart(logic.low_data_figure(curves, name, logic.all_label_count(bench, name)), key="results_curve")
            st.download_button("Download the bench table (CSV)", curves.to_csv(index=False), "ssl_bench.csv",
                               "text/csv", key="results_bench_download")
        if not records["pretext"] and not len(accuracy) and not bench:
            st.info("No results yet: train in the Train tab or run `astrocore bench ssl`.")
