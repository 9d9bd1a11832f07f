"""Logic of the Nebulae page (no Streamlit): the simulated domain gap, BPT diagrams with the
Kauffmann 2003 and Kewley 2001 curves, training arguments, comparison tables, confusion
matrices, the noise-injection sweep, UMAP of the features before / after adaptation, and the
classification of an uploaded catalogue."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from astropy.table import Table

from ..data.dataset import DataError, Dataset
from ..data.readers.catalogues import read_nebula_catalogue
from ..data.simulators.nebulae import CLASSES, RATIO_TITLES
from ..data.simulators.nebulae_observe import KNOBS
from ..embeddings import project
from ..methods.dann.baselines import kauffmann03, kewley01_nii, kewley01_oi, kewley01_sii
from ..methods.dann.run import DannRun, nebula_dataset
from ..runs import RunRecord

CLASS_COLOURS = {"HII": "#1f77b4", "PN": "#2ca02c", "SNR": "#d62728"}
DOMAIN_COLOURS = {"source": "#7f7f7f", "target": "#ff7f0e"}
KNOB_HELP = {
    "dig": "diffuse ionised gas in the aperture (raises [SII]/Hα, [NII]/Hα; lowers [OIII]/Hβ)",
    "dust": "dust extinction, Fitzpatrick 1999 curve (mean A_V = 1 mag at 1)",
    "noise": "flux noise and non-detections of faint lines",
    "calibration": "flux-calibration tilt per galaxy",
    "gradient": "radial abundance gradients instead of the models' flat O/H prior",
    "balance": "observed class balance (86 % HII) instead of equal thirds",
}
DIAGRAMS = (("log_nii_ha", kewley01_nii, (-1.6, 0.7)), ("log_sii_ha", kewley01_sii, (-1.6, 0.6)),
            ("log_oi_ha", kewley01_oi, (-3.2, 0.2)))
MODE_TITLES = {"dann": "DANN", "source_only": "source only", "oracle": "oracle (target labels)"}
MAX_POINTS = 3000


# ============================================================================ data
def nebula_source(n: int = 4000, seed: int = 0, gap: float = 1.0, **knobs) -> dict:
    """The ``data`` record of a simulated source + target set (what ``astrocore train dann`` rebuilds)."""
    params = {"n_source": int(n), "n_target": int(n), "seed": int(seed), "gap": float(gap)}
    params.update({k: float(knobs.get(k, 1.0)) for k in KNOBS})
    return {"kind": "simulator", "generator": "nebulae", "params": params}


def simulate(source: dict) -> Dataset:
    return nebula_dataset(source)


def train_arguments(source: dict, mode: str, noise_sigma: float, epochs: int, seed: int = 0,
                    detection_limits: bool = True) -> list[str]:
    """``astrocore train dann`` arguments (for jobs.start_method_training). ``detection_limits``:
    train on the models as the catalogue would record them (non-detections at their limits)."""
    params = source["params"]
    arguments = ["--data", "nebulae", "--n-source", params["n_source"], "--n-target", params["n_target"],
                 "--data-seed", params["seed"], "--gap", params["gap"], "--mode", mode,
                 "--noise-sigma", noise_sigma, "--epochs", epochs, "--seed", seed,
                 "--detection-limits", "target" if detection_limits else "none"]
    for knob in KNOBS:
        arguments += [f"--{knob}", params[knob]]
    return [str(a) for a in arguments]


def gap_summary(dataset: Dataset) -> pd.DataFrame:
    """Median log ratios per domain and class, and the class shares: what the gap does."""
    labels = dataset.labels
    rows = []
    for domain in ("source", "target"):
        in_domain = labels["domain"] == domain
        for name in CLASSES:
            mask = in_domain & (labels["class"] == name)
            row = {"domain": domain, "class": name, "share": float(mask.sum() / max(in_domain.sum(), 1))}
            for key in ("log_oiii_hb", "log_nii_ha", "log_sii_ha", "log_oi_ha", "log_ha_hb"):
                row[f"median {RATIO_TITLES.get(key, key)} [dex]"] = float(np.nanmedian(np.asarray(labels[key])[mask])) if mask.any() else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


# ============================================================================ BPT diagrams
def _sample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(n)[:max_points]) if n > max_points else np.arange(n)


def bpt_figure(table, x_name: str, colour_by: str = "class", title: str = "", max_points: int = MAX_POINTS,
               hover: str | None = None) -> go.Figure:
    """log [OIII]/Hbeta against ``x_name`` with the Kewley 2001 (and, for [NII], Kauffmann 2003)
    curves; points coloured by ``colour_by`` (a column: class, domain, predicted_class)."""
    curve = {name: c for name, c, _ in DIAGRAMS}[x_name]
    x_range = {name: r for name, _, r in DIAGRAMS}[x_name]
    figure = go.Figure()
    x_all, y_all = np.asarray(table[x_name], float), np.asarray(table["log_oiii_hb"], float)
    groups = np.asarray(table[colour_by]).astype(str)
    colours = DOMAIN_COLOURS if colour_by == "domain" else CLASS_COLOURS
    index = _sample(len(x_all), max_points)
    for group in [g for g in (*colours, *sorted(set(groups) - set(colours))) if g in set(groups[index])]:
        rows = index[groups[index] == group]
        figure.add_scatter(x=x_all[rows], y=y_all[rows], mode="markers", name=group or "unclassified",
                           marker=dict(size=4, opacity=0.5, color=colours.get(group, "#999999")),
                           text=None if hover is None else np.asarray(table[hover]).astype(str)[rows])
    grid = np.linspace(x_range[0], x_range[1], 300)
    figure.add_scatter(x=grid, y=curve(grid), mode="lines", name="Kewley 2001", line=dict(color="black"))
    if x_name == "log_nii_ha":
        figure.add_scatter(x=grid, y=kauffmann03(grid), mode="lines", name="Kauffmann 2003",
                           line=dict(color="black", dash="dash"))
    if x_name == "log_sii_ha":
        figure.add_vline(x=np.log10(0.4), line=dict(color="grey", dash="dot"),
                         annotation_text="[SII]/Hα = 0.4", annotation_position="bottom right")
    figure.update_layout(title=below_toolbar(title), height=400, margin=dict(l=10, r=10, t=64, b=10),
                         legend=dict(itemsizing="constant"))
    figure.update_xaxes(title=f"{RATIO_TITLES[x_name]} [dex]", range=list(x_range))
    figure.update_yaxes(title=f"{RATIO_TITLES['log_oiii_hb']} [dex]", range=[-1.6, 1.7])
    return figure


def below_toolbar(text: str) -> dict:
    """A chart title set below plotly's toolbar (which sits in the top-right corner), so narrow
    charts do not draw one over the other; needs a top margin of about 64 px."""
    return dict(text=text, x=0.01, xanchor="left", y=1, yref="container", yanchor="top", pad=dict(t=34),
                font=dict(size=14))


def bpt_panels(table, colour_by: str = "class", title: str = "", max_points: int = MAX_POINTS) -> list[go.Figure]:
    return [bpt_figure(table, name, colour_by, f"{title} [{name.split('_')[1].upper()}]", max_points)
            for name, _, _ in DIAGRAMS]


# ============================================================================ results
def comparison_table(records: list[RunRecord]) -> pd.DataFrame:
    """One row per finished DANN-family run: target accuracy, macro-F1, recall per class."""
    rows = []
    for record in records:
        target = record.metrics.get("target") or {}
        params = record.data.get("params", {})
        rows.append({"run": record.id, "model": MODE_TITLES.get(record.config.get("mode"), "?"),
                     "noise σ [dex]": record.config.get("noise_sigma"),
                     "detection limits": record.config.get("detection_limits", "none"), "gap": params.get("gap"),
                     "target accuracy": target.get("accuracy"), "macro-F1": target.get("macro_f1"),
                     **{f"recall {k}": v for k, v in (target.get("recall") or {}).items()},
                     "epoch kept": record.metrics.get("selected_epoch"),
                     "train s": record.metrics.get("train_seconds")})
    return pd.DataFrame(rows)


def confusion_figure(confusion, title: str) -> go.Figure:
    """Row-normalised confusion matrix (true class down, predicted across), counts as text."""
    counts = np.asarray(confusion, float)
    fraction = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    figure = go.Figure(go.Heatmap(z=fraction, x=list(CLASSES), y=list(CLASSES), zmin=0, zmax=1,
                                  colorscale="Blues", text=counts.astype(int), texttemplate="%{text}",
                                  colorbar=dict(title="recall")))
    figure.update_layout(title=below_toolbar(title), height=340, margin=dict(l=10, r=10, t=64, b=10))
    figure.update_xaxes(title="predicted class")
    figure.update_yaxes(title="true class", autorange="reversed")
    return figure


def noise_sweep_figure(records: list[RunRecord]) -> go.Figure:
    """Target accuracy against the noise-injection sigma, one line per model (from finished runs
    on the same kind of data; several seeds at one sigma are averaged)."""
    table = comparison_table(records)
    figure = go.Figure()
    if len(table):
        for (model, limits), group in table.groupby(["model", "detection limits"]):
            means = group.groupby("noise σ [dex]")["target accuracy"].mean().sort_index()
            name = model if limits == "none" else f"{model}, at detection limits"
            figure.add_scatter(x=means.index, y=means.values, mode="lines+markers", name=name)
    figure.update_layout(title="Noise injection: target accuracy vs σ", height=340, margin=dict(l=10, r=10, t=40, b=10))
    figure.update_xaxes(title="noise σ added to the model ratios [dex]")
    figure.update_yaxes(title="target accuracy", range=[0, 1])
    return figure


def embedding_figure(run: DannRun, dataset: Dataset, representation: str, method: str = "umap",
                     max_points: int = 2000, colour_by: str = "domain") -> go.Figure:
    """Source and target in one 2-d projection of the input ratios ("ratios", before) or of the
    network's feature layer ("features", after adaptation)."""
    index = _sample(len(dataset), max_points, seed=1)
    subset = dataset.subset(index)
    values = run.representation(representation, subset)
    coordinates, _ = project(values, method, key=f"{run.id}-{representation}-{max_points}")
    groups = np.asarray(subset.labels[colour_by]).astype(str)
    colours = DOMAIN_COLOURS if colour_by == "domain" else CLASS_COLOURS
    figure = go.Figure()
    for group in sorted(set(groups)):
        rows = groups == group
        figure.add_scatter(x=coordinates[rows, 0], y=coordinates[rows, 1], mode="markers", name=group,
                           marker=dict(size=4, opacity=0.5, color=colours.get(group)))
    what = "input line ratios" if representation == "ratios" else "DANN feature layer"
    figure.update_layout(title=f"{method.upper()} of the {what}", height=380, margin=dict(l=10, r=10, t=40, b=10))
    figure.update_xaxes(title=f"{method} 1")
    figure.update_yaxes(title=f"{method} 2")
    return figure


# ============================================================================ upload
def classify_upload(run: DannRun, data: bytes, name: str) -> Table:
    """Read an uploaded catalogue and add the run's class and probabilities (rows that cannot be
    classified keep their ``reason``). Raises DataError for an unreadable upload."""
    catalogue = read_nebula_catalogue(data, name=name)
    try:
        return run.classify_table(catalogue.labels)
    except (ValueError, TypeError, KeyError, IndexError) as error:  # odd values the reader let through
        raise DataError(f"{name} could not be classified: {type(error).__name__}: {str(error)[:200]}") from error


def upload_summary(table: Table) -> dict:
    usable = np.asarray(table["usable"], bool)
    predicted = np.asarray(table["predicted_class"]).astype(str)
    return {"rows": len(table), "classified": int(usable.sum()), "with a reason": int((~usable).sum()),
            **{name: int(((predicted == name) & usable).sum()) for name in CLASSES}}


def table_csv(table: Table) -> bytes:
    """The classified table as CSV bytes (for the download button)."""
    buffer = io.StringIO()
    table.to_pandas().to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def classified_preview(table: Table, n: int = 200) -> pd.DataFrame:
    """The first ``n`` rows: id, class, probabilities and the ratios they came from."""
    columns = ["id", "predicted_class", "probability", *[f"probability_{c}" for c in CLASSES],
               "log_oiii_hb", "log_nii_ha", "log_sii_ha", "log_oi_ha", "reason"]
    return table[[c for c in columns if c in table.colnames]][:n].to_pandas()


def reasons_table(table: Table) -> pd.DataFrame:
    usable = np.asarray(table["usable"], bool)
    return pd.DataFrame({"id": np.asarray(table["id"])[~usable], "reason": np.asarray(table["reason"])[~usable]})


def check_run(record: RunRecord) -> None:
    if record.method != "dann":
        raise DataError(f"Run {record.id} is a {record.method} run; choose a dann run.")
