"""Runs: the run registry — list, compare, download and delete runs.

UI only; the tables come from astrocore.app_logic and the run folders from astrocore.runs.
"""
import streamlit as st

from astrocore import jobs
from astrocore.app import common as app_common
from astrocore.app import plots
from astrocore.app import runs as app_runs
from astrocore.app import spectra as app_spectra
from astrocore.runs import RunError, delete_run, list_runs, runs_dir

if not st.session_state.get("astrocore_app"):
    # Opened by URL before app.py ever ran in this server (Streamlit's pages/-folder mode): run the app
    # entry point, which sets up the navigation and then renders this page.
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"), run_name="__main__")
    st.stop()

st.title("Runs")
folder = runs_dir()
st.caption(f"Every run in `{folder.resolve()}` — the same listing as `astrocore runs list`. A run folder holds "
           "its configuration, metrics, weights (safetensors), per-star arrays and logs.")

records = list_runs()
if not records:
    st.info("No runs yet. The **Spectra** page trains a default model on its first visit; "
            "`astrocore train disentangle ...` adds runs from the command line.")
    st.stop()

by_id = {record.id: record for record in records}
evaluations = {record.id: jobs.read_evaluation(record.path) for record in records}
table = app_runs.runs_table(records, evaluations)

st.dataframe(
    table, hide_index=True, width="stretch", key="runs_table",
    column_config={
        "recon MSE (test)": st.column_config.NumberColumn(format="%.3g"),
        "R² teff (z)": st.column_config.NumberColumn(format="%.3f"),
        "R² logg (z)": st.column_config.NumberColumn(format="%.3f"),
        "twins": st.column_config.NumberColumn(format="%.3f"),
        "train s": st.column_config.NumberColumn(format="%.0f"),
    })
left, right = st.columns([1, 1])
left.download_button("This table · CSV", table.to_csv(index=False).encode(), file_name="runs.csv", mime="text/csv",
                     on_click="ignore", icon=":material/download:")
with right.expander("As printed by `astrocore runs list`"):
    st.code(app_runs.runs_listing_text(folder), language=None)

# ---------------------------------------------------------------------------- compare
st.subheader("Compare runs")
finished = [r.id for r in records if r.status == "done"]
chosen = st.multiselect("Runs", list(by_id), default=finished[:2], key="compare_runs",
                        format_func=lambda rid: app_common.run_label(by_id[rid]))
if chosen:
    selected = [by_id[rid] for rid in chosen]
    only_diff = st.toggle("Only settings that differ", value=len(selected) > 1, key="only_diff")
    diff = app_runs.config_diff(selected, only_differences=only_diff)
    columns = st.columns(2)
    with columns[0]:
        st.markdown("**Configuration and data**")
        if diff.empty:
            st.caption("The selected runs have identical settings.")
        else:
            st.dataframe(diff, width="stretch")
    with columns[1]:
        st.markdown("**Metrics**")
        metrics = app_runs.metrics_table(selected, evaluations)
        if metrics.empty:
            st.caption("No metrics yet (runs that are still training or failed).")
        else:
            st.dataframe(app_spectra.formatted(metrics, "{:.4g}"), width="stretch")
    metric = st.radio("Loss curve", ["val_recon", "train_recon", "val_objective"], horizontal=True,
                      key="compare_metric", format_func=lambda m: m.replace("_", " "))
    series = app_runs.compare_curves(selected, metric)
    if series:
        st.plotly_chart(plots.compare_losses_figure(series, metric.replace("_", " ")), key="compare_chart",
                        config=plots.PLOTLY_CONFIG, theme=None)
    else:
        st.caption(f"No '{metric.replace('_', ' ')}' recorded for these runs (runs on very small data have no "
                   "validation split; try 'train recon').")

# ---------------------------------------------------------------------------- one run
st.subheader("One run")
run_id = st.selectbox("Run", list(by_id), key="manage_run", format_func=lambda rid: app_common.run_label(by_id[rid]))
record = by_id[run_id]
status = jobs.job_status(record.path)
info = st.columns([3, 2])
with info[0]:
    st.markdown(f"**{record.id}** · {record.method} · status **{record.status}** · created "
                f"{record.created.replace('T', ' ')}")
    if record.message:
        st.caption(record.message)
    st.json({"config": record.config, "data": record.data, "metrics": record.metrics}, expanded=1)
with info[1]:
    st.download_button("Download the run (zip)", data=lambda: app_runs.zip_bytes(record, folder),
                       file_name=f"{record.id}.zip", mime="application/zip", on_click="ignore",
                       icon=":material/folder_zip:", width="stretch",
                       help="run.json, weights.safetensors, arrays.npz, logs and evaluation (no checkpoints).")
    alive = status["state"] in ("starting", "running", "cancelling")
    if alive:
        st.warning("This run is still training; cancel it on the Spectra page (Train tab) before deleting it.")
    elif st.session_state.get("confirm_delete") == record.id:
        st.error(f"Delete **{record.id}** and all its files? This cannot be undone.")
        yes, no = st.columns(2)
        if yes.button("Yes, delete", type="primary", key="delete_yes", width="stretch"):
            try:
                delete_run(record.path, folder)
            except (RunError, OSError) as error:
                st.session_state.pop("confirm_delete", None)
                st.error(f"Not deleted: {error}")
            else:
                st.session_state.pop("confirm_delete", None)
                st.toast(f"Deleted {record.id}")
                st.rerun()
        if no.button("Keep it", key="delete_no", width="stretch"):
            st.session_state.pop("confirm_delete", None)
            st.rerun()
    elif st.button("Delete this run …", key="delete", icon=":material/delete:", width="stretch"):
        st.session_state.confirm_delete = record.id
        st.rerun()
