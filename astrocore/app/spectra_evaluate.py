"""The Spectra page's Evaluate tab: probes against the paper, twins, reconstruction by Teff and
the embedding of the run."""

import pandas as pd
import streamlit as st

from .. import jobs
from ..data.names import label_title
from . import common as app_common
from . import plots
from . import spectra as app_spectra
from .spectra_state import clicked_star, get_dataset, hover_texts, pca_coordinates, reset_star_state


# ---------------------------------------------------------------------------- Evaluate
def evaluate_tab(run, record, default_settings: dict | None = None) -> None:
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
                app_spectra.TWINS_COLUMN: st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.3f")})
        st.dataframe(app_spectra.evaluation_metrics_table(evaluated), hide_index=True, width="stretch")
        for rid in chosen:
            choice = latent_choice_table(by_id[rid])
            if choice is not None:
                st.markdown(f"#### Latent size of {rid}: chosen on the validation split")
                st.caption("One model per candidate size. Kept: the best validation reconstruction among the sizes "
                           "whose latent reads each conditional parameter at validation R² ≤ "
                           f"{by_id[rid].metrics['latent_choice']['max_leakage']:g} (MLP or k-NN probe, whichever "
                           "reads more). The test stars play no part in the choice.")
                st.dataframe(choice, hide_index=True, width="stretch")
        by_parameter = app_spectra.recon_by_parameter_table(evaluated)
        if not by_parameter.empty:
            title = label_title(by_parameter["parameter"].iloc[0])
            st.markdown(f"#### Reconstruction error across {title}")
            st.caption("Mean squared error of held-out reconstructions in bins of the first conditional "
                       "parameter (continuum-normalised flux): where across the grid a model loses detail.")
            st.plotly_chart(plots.recon_by_parameter_figure(by_parameter), key="recon_by_cp_chart",
                            config=plots.PLOTLY_CONFIG, theme=None)
            st.download_button("Reconstruction error by bin · CSV", by_parameter.to_csv(index=False).encode(),
                               file_name="recon_by_parameter.csv", mime="text/csv", on_click="ignore")

    results()
    embedding_section(run, record)


def embedding_section(run, record) -> None:
    st.markdown("#### Embeddings of X and z")
    source_json = app_common.source_to_json(record.data)
    dataset = get_dataset(source_json)
    columns = st.columns(3)
    representation = columns[0].radio("Representation", list(app_spectra.REPRESENTATIONS), key="emb_rep",
                                      format_func=app_spectra.REPRESENTATIONS.get, horizontal=True)
    method = columns[1].radio("Method", list(app_spectra.EMBEDDING_METHODS), key="emb_method",
                              format_func=app_spectra.EMBEDDING_METHODS.get, horizontal=True)
    colour = columns[2].selectbox("Colour by", app_spectra.colour_options(dataset), key="emb_colour",
                                  format_func=label_title)
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


def latent_choice_table(record) -> pd.DataFrame | None:
    """The candidates of a run whose latent size was chosen on validation (``metrics["latent_choice"]``):
    size, validation R^2 of each conditional parameter read from the latent, validation
    reconstruction MSE (continuum-normalised flux squared) and which was kept; None for other runs."""
    choice = (record.metrics or {}).get("latent_choice")
    if not choice or "candidates" not in choice:
        return None
    rows = []
    for candidate in choice["candidates"]:
        row = {"Latent dimensions": candidate["latent_dim"]}
        row.update({f"{label_title(name)} R² (validation)": value for name, value in candidate["leakage"].items()})
        row["Reconstruction MSE (validation)"] = candidate["val_recon_mse"]
        row["Kept"] = candidate["latent_dim"] == choice["kept"]
        rows.append(row)
    return pd.DataFrame(rows)
