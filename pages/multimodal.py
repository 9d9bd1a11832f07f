"""Multimodal BHB: identify blue horizontal branch stars from an SDSS spectrum and a ugriz cutout
(BATMM; Wei, Jiang & Zhang 2023). Widgets only; the logic is in astrocore.app.multimodal."""
import time

import streamlit as st

from astrocore import jobs
from astrocore.app import multimodal as logic
from astrocore.app.common import load_run
from astrocore.data.dataset import DataError
from astrocore.runs import runs_dir

if not st.session_state.get("astrocore_app"):
    # Opened by URL before app.py ran in this server: run the entry point, which renders this page.
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"), run_name="__main__")
    st.stop()

st.title("Multimodal BHB")
st.caption("Blue horizontal branch stars vs blue stragglers and A-type main-sequence stars, from a 4000-9000 A "
           "spectrum and a ugriz cutout. The u band holds the Balmer jump (3646 A), which the spectrum lacks; "
           "a fusion transformer lets image tokens attend to spectral segments.")


@st.cache_resource(max_entries=4)
def get_run(path: str, stamp: float):
    return load_run(path)  # through the registry: a broken folder gives one clear error


def run_of(record):
    from astrocore.app.common import run_stamp

    return get_run(str(record.path), run_stamp(record))


records = logic.batmm_runs()
record = None
if records:
    by_id = {r.id: r for r in records}
    if st.session_state.get("batmm_run") not in by_id:
        st.session_state.batmm_run = records[0].id
    st.selectbox("Model", list(by_id), key="batmm_run", format_func=lambda rid: logic.run_label(by_id[rid]),
                 help="Finished BATMM runs in the runs folder; the Train tab adds more.")
    record = by_id[st.session_state.batmm_run]
else:
    st.info("No BATMM model yet: train one in the **Train** tab (about 5-10 minutes on 2 CPU cores).")

tab_classify, tab_compare, tab_attention, tab_train = st.tabs(
    ["Classify a star", "Comparison", "Attention", "Train"], key="batmm_tab", on_change="rerun")


# ============================================================================ classify
def show_result(result: dict, run) -> None:
    probability = result["probability"]
    verdict = "BHB" if probability >= 0.5 else "not BHB"
    cols = st.columns(3)
    cols[0].metric("P(BHB), calibrated", f"{probability:.3f}", verdict)
    if "spectrum_only_probability" in result:
        cols[1].metric("Spectrum encoder alone", f"{result['spectrum_only_probability']:.3f}")
    if "image_only_probability" in result:
        cols[2].metric("Image encoder alone", f"{result['image_only_probability']:.3f}")
    if not result["spectrum_given"] or not result["image_given"]:
        st.warning("One modality is missing: its learned missing-modality token stands in, and the probability "
                   "is less certain.", icon=":material/warning:")
    if result.get("segment_weights"):
        weights = [s["weight"] for s in result["segment_weights"]]
        st.plotly_chart(logic.segment_weights_figure(weights, run.segment_edges_aa(), run_wavelength(), result["flux"]),
                        key="upload_segments")
    if result.get("cutout") is not None:
        st.plotly_chart(logic.cutout_figure(result["cutout"]), key="upload_cutout")
    if result.get("band_weights"):
        st.plotly_chart(logic.band_weights_figure(result["band_weights"]), key="upload_bands")
    if result.get("cross_attention"):
        layer = st.slider("Fusion layer", 1, len(result["cross_attention"]), 1, key="upload_layer") - 1
        by_wavelength, by_image = logic.cross_attention_figures(result["cross_attention"], run.segment_edges_aa(), layer)
        left, right = st.columns(2)
        left.plotly_chart(by_wavelength, key="upload_cross_w")
        right.plotly_chart(by_image, key="upload_cross_i")


def run_wavelength():
    from astrocore.data.readers.sdss import grid_wavelength

    return grid_wavelength()


with tab_classify:
    if tab_classify.open is not False:
        st.write("Upload an SDSS **spec / spec-lite FITS** (or a CSV with wavelength [A] and flux) and a **ugriz "
                 "cutout** (one FITS with an extension per band, or five FITS files u, g, r, i, z).")
        left, right = st.columns(2)
        spectrum_file = left.file_uploader("Spectrum", type=["fits", "fit", "csv"], key="batmm_spectrum")
        cutout_files = right.file_uploader("Cutout", type=["fits", "fit", "png", "jpg", "jpeg"],
                                           accept_multiple_files=True, key="batmm_cutout")
        use_example = st.button("Use the example BHB star", icon=":material/star:", key="batmm_example")
        if record is None:
            st.info("Train a model first (Train tab).")
        elif use_example or spectrum_file is not None or cutout_files:
            run = run_of(record)
            try:
                if use_example:
                    spectrum, cutouts = logic.example_upload()
                else:
                    spectrum = None if spectrum_file is None else (spectrum_file.name, spectrum_file.getvalue())
                    cutouts = [(f.name, f.getvalue()) for f in cutout_files or []]
                started = time.perf_counter()
                result = logic.classify_upload(run, spectrum, cutouts)
                st.caption(f"classified in {1e3 * (time.perf_counter() - started):.0f} ms")
                show_result(result, run)
            except DataError as error:
                st.error(f"Could not read the upload: {error}", icon=":material/error:")

# ============================================================================ comparison
with tab_compare:
    if tab_compare.open is not False:
        bench = logic.read_bench()
        table = logic.comparison_table(bench, record)
        st.write("F1, precision and recall of the BHB class on the test split, mean and standard deviation over "
                 "the bench's seeds (`astrocore bench batmm`), next to the paper's F1 (Wei et al. 2023, Table 8).")
        if bench is None:
            st.info("No bench record yet (benchmarks/batmm_fast.json).")
        else:
            setup = bench.get("setup", {})
            st.caption(f"{setup.get('seeds')} seeds · {setup.get('n_stars')} simulated stars · S/N {setup.get('snr')} · "
                       f"BATMM training {bench['train_s']['mean']:.0f} s per seed")
        st.dataframe(table.to_pandas().drop(columns="key"), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%.1f") for c in table.colnames
                                    if c.endswith("pct")})
        st.download_button("Download the table (CSV)", logic.table_csv(table), "batmm_comparison.csv", "text/csv")
        if record is not None:
            run = run_of(record)
            st.plotly_chart(logic.roc_pr_figure(run), key="roc_pr")
            figure, ece = logic.reliability_figure(run)
            st.write(f"Calibration: temperature {record.metrics.get('temperature', 1):.2f} fitted on the validation "
                     f"split; expected calibration error on the test split {ece:.3f}.")
            st.plotly_chart(figure, key="reliability")

# ============================================================================ attention
with tab_attention:
    if tab_attention.open is not False:
        if record is None:
            st.info("Train a model first (Train tab).")
        else:
            run = run_of(record)
            metrics = record.metrics
            st.write("Mean attention over the test split: the spectrum encoder's weights over 7 wavelength segments "
                     "and the image encoder's squeeze-and-excitation weights over the bands (the paper's Fig. 9).")
            if metrics.get("segment_weights"):
                st.plotly_chart(logic.segment_weights_figure(metrics["segment_weights"], run.segment_edges_aa()),
                                key="mean_segments")
            st.plotly_chart(logic.band_weights_figure(metrics["band_weights"]), key="mean_bands")
            st.write("Missing modalities (learned tokens stand in): F1 "
                     f"{metrics['missing_image']['f1']:.3f} without the image, "
                     f"{metrics['missing_spectrum']['f1']:.3f} without the spectrum "
                     f"(both: {metrics['test']['f1']:.3f}).")

# ============================================================================ train
with tab_train:
    if tab_train.open is not False:
        cols = st.columns(4)
        n_stars = cols[0].number_input("Simulated stars", 100, 50_000, 4000, step=500, key="batmm_n")
        snr = cols[1].number_input("S/N at g = 18", 1.0, 500.0, 15.0, key="batmm_snr")
        data_seed = cols[2].number_input("Data seed", 0, 10_000, 0, key="batmm_data_seed")
        seed = cols[3].number_input("Training seed", 0, 10_000, 0, key="batmm_seed")
        preset = st.radio("Preset", ["fast", "paper"], horizontal=True, key="batmm_preset",
                          help="fast: minutes on 2 CPU cores; paper: 512-d tokens, 8 layers x 8 heads (a GPU).")
        if st.button("Train in the background", icon=":material/play_arrow:", key="batmm_train"):
            try:
                arguments = logic.training_arguments(n_stars, snr, data_seed, seed, preset)
                st.session_state.batmm_job = jobs.start_method_training("batmm", arguments, label="BATMM")
            except (DataError, jobs.JobError) as error:
                st.error(str(error))

        @st.fragment(run_every=2)
        def progress():
            job = st.session_state.get("batmm_job")
            if not job:
                return
            folder = runs_dir() / job
            status = jobs.job_status(folder)
            st.progress(status["fraction"], text=logic.phase_text(status))
            if status["state"] in ("running", "starting", "cancelling"):
                if st.button("Cancel", icon=":material/stop:", key="batmm_cancel"):
                    jobs.cancel(folder)
            elif status["state"] == "done":
                st.success(f"Run {job} finished.")
                if st.button("Show it", key="batmm_show"):
                    st.session_state.batmm_run = job
                    st.rerun()
            elif status["state"] in ("failed", "cancelled"):
                st.error(f"Training {status['state']}: {status.get('message') or status.get('log', '')[-500:]}")

        progress()
