"""Nebulae: classify HII regions, planetary nebulae and supernova remnants across the gap between
models and observations (DANN; Belfiore et al. 2025). Widgets and charts only; the logic is in
astrocore.app.nebulae."""
import json
from pathlib import Path

import streamlit as st

from astrocore import jobs
from astrocore.app import common as app_common
from astrocore.app import nebulae as logic
from astrocore.data.dataset import DataError
from astrocore.data.simulators.nebulae_observe import KNOBS
from astrocore.runs import runs_dir

if not st.session_state.get("astrocore_app"):
    # Opened by URL before app.py ran in this server: run the entry point, which renders this page.
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"), run_name="__main__")
    st.stop()

EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "example_nebulae_catalogue.csv"


@st.cache_data(max_entries=4, show_spinner="Simulating models and observed nebulae ...")
def get_dataset(source_json: str):
    return logic.simulate(json.loads(source_json))


@st.cache_resource(max_entries=4)
def get_run(path: str, stamp: float):
    return app_common.load_run(path)


st.title("Nebulae")
st.caption("A classifier trained on photoionisation and shock models (source) is adapted to observed nebulae "
           "(target, unlabelled) with a domain-adversarial network and noise injection.")
root = runs_dir()
records = app_common.finished_runs(method="dann")
tabs = st.tabs(["Domain gap", "Train & compare", "Classify a catalogue"], key="nebulae_tab", on_change="rerun")

# ============================================================================ the gap
with tabs[0]:
    if tabs[0].open is not False:
        top = st.columns(3)
        gap = top[0].slider("Gap strength (scales every effect)", 0.0, 2.0, 1.0, 0.05, key="neb_gap")
        n = top[1].select_slider("Nebulae per domain", [1000, 2000, 4000, 8000], 4000, key="neb_n")
        seed = top[2].number_input("Seed", 0, 10_000, 0, key="neb_seed")
        knob_columns = st.columns(len(KNOBS))
        knobs = {knob: column.slider(knob, 0.0, 2.0, 1.0, 0.1, key=f"neb_{knob}", help=logic.KNOB_HELP[knob])
                 for knob, column in zip(KNOBS, knob_columns)}
        source = logic.nebula_source(n, int(seed), gap, **knobs)
        st.session_state.neb_source = source
        dataset = get_dataset(json.dumps(source, sort_keys=True))
        colour = st.radio("Colour by", ["class", "domain"], horizontal=True, key="neb_colour")
        labels = dataset.labels
        for name, title in (("source", "Models (source)"), ("target", "Observed (target)")):
            st.markdown(f"**{title}**")
            columns = st.columns(3)
            for column, figure in zip(columns, logic.bpt_panels(labels[labels["domain"] == name], colour, title)):
                column.plotly_chart(figure, key=f"bpt_{name}_{figure.layout.title.text}")
        summary = logic.gap_summary(dataset)
        st.dataframe(summary, hide_index=True)
        st.download_button("Download the simulated table (CSV)", logic.table_csv(labels), "nebulae_simulated.csv",
                           "text/csv", key="neb_download_sim")

# ============================================================================ train and compare
with tabs[1]:
    if tabs[1].open is not False:
        source = st.session_state.get("neb_source") or logic.nebula_source()
        st.caption(f"Data: gap {source['params']['gap']}, {source['params']['n_source']} nebulae per domain "
                   "(set on the Domain gap tab).")
        with st.form("neb_train"):
            columns = st.columns(5)
            mode = columns[0].selectbox("Model", list(logic.MODE_TITLES), format_func=logic.MODE_TITLES.get,
                                        key="neb_mode")
            sigma = columns[1].number_input("Noise injection σ [dex]", 0.0, 0.5, 0.1, 0.05, key="neb_sigma")
            epochs = columns[2].number_input("Epochs", 1, 200, 25, key="neb_epochs")
            pair = columns[3].checkbox("Also train source-only (same σ, limits)", value=True, key="neb_pair")
            limits = columns[4].checkbox("Models at the catalogue's detection limits", value=True, key="neb_limits",
                                         help="Train on the models as the catalogue would record them: a line "
                                              "below 3σ of a random observed nebula enters at its upper limit.")
            if st.form_submit_button("Train in the background"):
                started = []
                for chosen in [mode] + (["source_only"] if pair and mode == "dann" else []):
                    started.append(jobs.start_method_training(
                        "dann", logic.train_arguments(source, chosen, sigma, int(epochs), detection_limits=limits),
                        runs_root=root,
                        label=f"{chosen} σ={sigma}" + (", detection limits" if limits else "")))
                st.session_state.neb_jobs = started

        @st.fragment(run_every=1.0)
        def job_progress():
            for job in st.session_state.get("neb_jobs", []):
                status = jobs.job_status(root / job)
                metrics = status["metrics"]
                text = f"{job}: {status['state']}" + "".join(
                    f" · {k} {metrics[k]:.3g}" for k in ("epoch", "loss", "target_accuracy") if k in metrics)
                st.progress(min(1.0, status["fraction"]), text=text)
                if status["state"] in ("failed", "cancelled"):
                    st.error(status["message"] or status["log"])
                elif status["state"] == "running" and st.button("Cancel", key=f"cancel_{job}"):
                    jobs.cancel(root / job)

        job_progress()
        if records:
            table = logic.comparison_table(records)
            st.dataframe(table, hide_index=True)
            st.download_button("Download the comparison (CSV)", table.to_csv(index=False), "dann_runs.csv",
                               "text/csv", key="neb_download_runs")
            by_id = {r.id: r for r in records}
            picked = st.multiselect("Confusion matrices of", list(by_id), default=list(by_id)[:2], key="neb_confusion")
            for column, run_id in zip(st.columns(max(1, len(picked))), picked):
                target = by_id[run_id].metrics.get("target", {})
                column.plotly_chart(logic.confusion_figure(target.get("confusion", [[0] * 3] * 3), run_id),
                                    key=f"confusion_{run_id}")
            st.plotly_chart(logic.noise_sweep_figure(records), key="neb_noise_sweep")
            st.subheader("Features of source and target, before and after adaptation")
            chosen = st.selectbox("Run", [r for r in by_id if by_id[r].config.get("mode") == "dann"] or list(by_id),
                                  key="neb_umap_run")
            method = st.radio("Projection", ["umap", "pca"], horizontal=True, key="neb_umap_method")
            if st.button("Project", key="neb_project"):
                run = get_run(str(by_id[chosen].path), app_common.run_stamp(by_id[chosen]))
                dataset = run.dataset()
                columns = st.columns(2)
                for column, name in zip(columns, ("ratios", "features")):
                    column.plotly_chart(logic.embedding_figure(run, dataset, name, method), key=f"umap_{name}")
        else:
            st.info("No finished DANN runs yet: train one above (about a minute on two CPU cores).")

# ============================================================================ classify
with tabs[2]:
    if tabs[2].open is not False:
        if EXAMPLE.exists():
            st.download_button("Example catalogue (CSV, PHANGS-MUSE column names)", EXAMPLE.read_bytes(),
                               EXAMPLE.name, "text/csv", key="neb_example")
        if not records:
            st.info("Train a DANN run first (Train & compare tab).")
        else:
            by_id = {r.id: r for r in records}
            run_id = st.selectbox("Classifier", list(by_id), key="neb_classify_run",
                                  format_func=lambda rid: f"{rid} ({logic.MODE_TITLES.get(by_id[rid].config.get('mode'))})")
            upload = st.file_uploader("Catalogue of line fluxes (FITS or CSV)", type=["csv", "fits", "fit", "ecsv"],
                                      key="neb_upload")
            if upload is not None:
                run = get_run(str(by_id[run_id].path), app_common.run_stamp(by_id[run_id]))
                try:
                    table = logic.classify_upload(run, upload.getvalue(), upload.name)
                except DataError as error:
                    st.error(str(error))
                else:
                    summary = logic.upload_summary(table)
                    for column, (key, value) in zip(st.columns(len(summary)), summary.items()):
                        column.metric(key, value)
                    usable = table[table["usable"]]
                    columns = st.columns(3)
                    for column, figure in zip(columns, logic.bpt_panels(usable, "predicted_class", "Classified")):
                        column.plotly_chart(figure, key=f"upload_{figure.layout.title.text}")
                    st.dataframe(logic.classified_preview(table), hide_index=True)
                    reasons = logic.reasons_table(table)
                    if len(reasons):
                        st.warning(f"{len(reasons)} rows could not be classified:")
                        st.dataframe(reasons, hide_index=True)
                    st.download_button("Download the classified table (CSV)", logic.table_csv(table),
                                       f"classified_{Path(upload.name).stem}.csv", "text/csv", key="neb_download")
