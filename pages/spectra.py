"""Spectra: disentangle stellar spectra from Teff and log g, and slide stars through the decoder.

UI only: the model choice and the four tabs, each a function in astrocore.app (spectra_generate,
spectra_train, spectra_evaluate) over the tested logic in astrocore.app.spectra.
"""
import streamlit as st

from astrocore.app import common as app_common
from astrocore.app.spectra_evaluate import evaluate_tab
from astrocore.app.spectra_generate import generate_tab
from astrocore.app.spectra_state import default_model_block, get_run, on_model_change
from astrocore.app.spectra_train import data_tab, train_tab
from astrocore.data.dataset import LABEL_TITLES

if not st.session_state.get("astrocore_app"):
    # Opened by URL before app.py ever ran in this server (Streamlit's pages/-folder mode): run the app
    # entry point, which sets up the navigation and then renders this page.
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"), run_name="__main__")
    st.stop()

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

for tab, render_tab in zip(tabs, (generate_tab, data_tab, train_tab, evaluate_tab)):
    with tab:
        if tab.open is not False:  # only the open tab runs (lazy tabs)
            render_tab(run, record, default_settings)
