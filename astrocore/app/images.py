"""Logic of the Self-supervised images page (no Streamlit): simulated cutouts to browse, training
commands for the background jobs, the pretext residuals, the accuracy table and low-data curves,
and classifying uploaded cutouts with their nearest neighbours."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..data.dataset import DataError, Dataset
from ..data.simulators.cutouts import LABEL_SETS, label_set, simulate_cutouts
from ..data.simulators.cutouts_sed import SURVEYS
from ..methods.ssl.classify import classify_files
from ..methods.ssl.config import PRETEXT_OBJECTIVES, SCHEMES, SSLConfig
from ..methods.ssl.data import PRETEXT_R_RANGE
from ..methods.ssl.evaluate import pretext_residuals
from ..methods.ssl.imagenet import imagenet_status, imagenet_weights_path
from ..runs import RunRecord, list_runs
from .cutouts import cutout_grid_figure
from .plots import plain_ticks

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CUTOUT = ROOT / "assets" / "example_cutout.fits"
EXAMPLE_PNG = ROOT / "assets" / "example_cutout.png"
BENCH_FILE = ROOT / "benchmarks" / "ssl_fast.json"
UPLOAD_TYPES = ["fits", "fit", "fts", "png", "jpg", "jpeg"]
SCHEME_TITLES = {"scratch": "from scratch", "frozen_pretext": "frozen magnitude features",
                 "finetune_pretext": "fine-tuned magnitude net", "frozen_contrastive": "frozen contrastive features",
                 "frozen_both": "frozen magnitude + contrastive features",
                 "imagenet": "frozen ImageNet features"}


# ============================================================================ runs
def ssl_runs(runs_root=None) -> dict[str, list[RunRecord]]:
    """Finished SSL runs, newest first, by stage: ``{"pretext": [...], "downstream": [...]}``."""
    done = [r for r in list_runs(runs_root) if r.method == "ssl" and r.status == "done"]
    return {stage: [r for r in done if r.config.get("stage") == stage] for stage in ("pretext", "downstream")}


def label_set_title(name: str) -> str:
    """``star_galaxy_quasar`` -> "star / galaxy / quasar", ``morphology_4`` -> "morphology (4 classes)"."""
    head, _, count = str(name).rpartition("_")
    if count.isdigit():
        return f"{head} ({count} classes)"
    return str(name).replace("_", " / ")


def pretext_targets_text(fixed_apertures_arcsec=None) -> str:
    """What a magnitude pretext regresses, e.g. "Kron magnitudes and 0.8″, 2″ aperture magnitudes";
    by default the fast preset's apertures."""
    if fixed_apertures_arcsec is None:
        fixed_apertures_arcsec = SSLConfig.preset("fast").fixed_apertures_arcsec
    radii = ", ".join(f"{float(r):g}″" for r in fixed_apertures_arcsec)
    return "Kron magnitudes" + (f" and {radii} aperture magnitudes" if radii else "")


def run_title(record: RunRecord) -> str:
    config, data = record.config, record.data
    if config.get("stage") == "pretext":
        mae = record.metrics.get("pretext_mae")
        targets = ("" if config.get("pretext") == "contrastive"
                   else f" · {pretext_targets_text(config.get('fixed_apertures_arcsec') or ())}")
        return (f"{record.id} · pretext {config.get('pretext')}{targets} · {len(data.get('bands', []))} bands"
                + (f" · MAE {mae:.3f} mag" if mae is not None else ""))
    name = label_set_title((data.get("params") or {}).get("name", "data"))
    accuracy = record.metrics.get("accuracy")
    return (f"{record.id} · {name} · {SCHEME_TITLES.get(config.get('scheme'), config.get('scheme'))} · "
            f"{data.get('n_labels', '?')} labels" + (f" · accuracy {accuracy:.3f}" if accuracy is not None else ""))


def available_schemes() -> dict[str, str]:
    """Downstream schemes this machine can run, with their titles (ImageNet only with weights on disk)."""
    return {s: SCHEME_TITLES[s] for s in SCHEMES if s != "imagenet" or imagenet_weights_path() is not None}


# ============================================================================ browsing
def preview_cutouts(kind: str, n: int = 24, seed: int = 0, survey: str = "splus") -> Dataset:
    """A small simulated set to look at: ``unlabelled`` (the pretext mix) or a label set name."""
    if kind == "unlabelled":
        return simulate_cutouts(n, survey=survey, seed=seed, r_range=PRETEXT_R_RANGE)
    return label_set(kind, n, survey=survey, seed=seed)


def display_bands(bands) -> list[int]:
    """Plane indices of g, r, i (blue to red) for colour composites when present, else all bands."""
    wanted = [list(bands).index(b) for b in ("g", "r", "i") if b in bands]
    return wanted if len(wanted) == 3 else list(range(len(bands)))


def cutout_grid(dataset: Dataset, rows=None, names=None, title: str = "") -> go.Figure:
    """Colour composites (g, r, i -> B, G, R; Lupton asinh) of ``rows`` of ``dataset``."""
    planes = display_bands(dataset.bands)
    rows = np.arange(len(dataset)) if rows is None else np.asarray(rows, int)
    if names is None:
        column = "target_name" if "target_name" in dataset.labels.colnames else "morphology"
        names = ([str(v) for v in np.asarray(dataset.labels[column])[rows]] if column in dataset.labels.colnames
                 else [str(r) for r in rows])
    return cutout_grid_figure(dataset.images[:, planes], [dataset.bands[p] for p in planes], rows, names=names,
                              columns=8, title=title)


def band_strip(image: np.ndarray, bands, title: str = "") -> go.Figure:
    """One cutout (n_bands, h, w) band by band in grey, each band scaled to its own 99.5th percentile."""
    image = np.asarray(image, np.float32)
    scale = np.maximum(np.percentile(image, 99.5, axis=(1, 2)), 1e-12)[:, None, None]
    planes = (image / scale)[:, None]
    return cutout_grid_figure(planes, ["flux"], np.arange(len(bands)), names=list(bands), mode="flux",
                              columns=min(12, len(bands)), title=title)


# ============================================================================ training
def pretext_arguments(n_objects: int, objective: str, epochs: int, seed: int = 0, survey: str = "splus") -> list[str]:
    """``astrocore train ssl`` arguments of a pretext run (for jobs.start_method_training)."""
    if objective not in PRETEXT_OBJECTIVES:
        raise DataError(f"objective must be one of {PRETEXT_OBJECTIVES}; got {objective!r}.")
    return ["--stage", "pretext", "--pretext", objective, "--n-objects", str(int(n_objects)), "--epochs",
            str(int(epochs)), "--seed", str(int(seed)), "--survey", survey]


def downstream_arguments(label_set_name: str, scheme: str, n_labels: int | None, pretext_path: str | None,
                         n_objects: int = 3000, seed: int = 0, survey: str = "splus") -> list[str]:
    """``astrocore train ssl --stage downstream`` arguments; schemes other than scratch and
    imagenet need a pretext run."""
    if label_set_name not in LABEL_SETS:
        raise DataError(f"Unknown label set {label_set_name!r}.")
    if scheme == "imagenet" and imagenet_weights_path() is None:
        raise DataError(imagenet_status())
    arguments = ["--stage", "downstream", "--scheme", scheme, "--label-set", label_set_name, "--n-objects",
                 str(int(n_objects)), "--seed", str(int(seed)), "--survey", survey]
    if n_labels:
        arguments += ["--n-labels", str(int(n_labels))]
    if scheme not in ("scratch", "imagenet"):
        if not pretext_path:
            raise DataError(f"The scheme {SCHEME_TITLES[scheme]} starts from a pretext run; train one first.")
        arguments += ["--pretext-run", str(pretext_path)]
    return arguments


# ============================================================================ results
def _band_axis(bands) -> list[str]:
    centres = {}
    for survey in SURVEYS.values():
        centres.update(dict(zip(survey.bands, survey.centre_aa)))
    return [f"{b} ({centres[b]} Å)" if b in centres else str(b) for b in bands]


def residual_figure(run) -> go.Figure:
    """Predicted minus measured magnitude per band on the held-out cutouts (box: quartiles), with the
    median photometric error as a band of +-1 sigma."""
    parts = pretext_residuals(run.arrays())
    labels = _band_axis(run.bands)
    figure = go.Figure()
    for index, label in enumerate(labels):
        figure.add_trace(go.Box(y=parts["residual"][:, index], name=label, boxpoints=False, marker_color="#4c78a8",
                                showlegend=False))
    error = np.median(parts["error"], axis=0)
    figure.add_trace(go.Scatter(x=labels, y=error, mode="lines", line=dict(dash="dot", color="#e45756"),
                                name="+1 sigma photometric error"))
    figure.add_trace(go.Scatter(x=labels, y=-error, mode="lines", line=dict(dash="dot", color="#e45756"),
                                name="-1 sigma photometric error"))
    figure.update_layout(template="plotly_white", height=380, margin=dict(l=10, r=10, t=40, b=10),
                         title=f"Pretext residuals on {len(parts['residual'])} held-out cutouts",
                         xaxis_title="band (centre wavelength)", yaxis_title="predicted - measured magnitude [mag]")
    return figure


def pretext_table(run) -> pd.DataFrame:
    """Per band: MAE of the predicted magnitudes, median photometric error, photometry minus truth [mag]."""
    parts = pretext_residuals(run.arrays())
    return pd.DataFrame({"band": list(run.bands),
                         "pretext MAE [mag]": np.abs(parts["residual"]).mean(axis=0).round(4),
                         "photometric error [mag]": np.median(parts["error"], axis=0).round(4),
                         "photometry - true [mag]": np.nanmedian(parts["photometry_minus_true"], axis=0).round(4)})


def accuracy_table(records: list[RunRecord]) -> pd.DataFrame:
    """Downstream runs: set, scheme, labels, test accuracy and macro F1."""
    rows = [{"run": r.id, "label set": (r.data.get("params") or {}).get("name", "file"),
             "scheme": r.config.get("scheme"), "labels": r.data.get("n_labels"), "seed": r.config.get("seed"),
             "accuracy": r.metrics.get("accuracy"), "macro F1": r.metrics.get("macro_f1"),
             "train [s]": r.metrics.get("train_seconds")} for r in records]
    return pd.DataFrame(rows, columns=["run", "label set", "scheme", "labels", "seed", "accuracy", "macro F1",
                                       "train [s]"])


def bench_curves(bench: dict) -> pd.DataFrame:
    """The bench record as rows (set, labels, scheme, accuracy mean and std, macro F1 mean)."""
    rows = []
    for name in LABEL_SETS:
        for count, schemes in (bench.get(name) or {}).items():
            for scheme, scores in schemes.items():
                if isinstance(scores, dict):
                    rows.append({"label set": name, "labels": count, "scheme": scheme,
                                 "accuracy": scores["accuracy"]["mean"], "accuracy std": scores["accuracy"]["std"],
                                 "macro F1": scores["macro_f1"]["mean"]})
    return pd.DataFrame(rows)


def read_bench(path=BENCH_FILE) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def curve_sets(table: pd.DataFrame) -> list[str]:
    """The label sets of :func:`bench_curves`' table, those measured at the most label counts (a
    curve rather than a point) first."""
    counts = table.groupby("label set")["labels"].nunique()
    return sorted(counts.index, key=lambda name: (-counts[name], name))


def all_label_count(bench: dict, label_set_name: str) -> int | None:
    """How many labels "all" meant for a set in a bench record: its training pool (older records
    only say how many cutouts the set had)."""
    return (bench.get("all_labels") or {}).get(label_set_name) or bench.get("n_labelled_per_set")


def low_data_figure(table: pd.DataFrame, label_set_name: str, total_labels: int | None = None) -> go.Figure:
    """Accuracy against the number of labels for each scheme (mean +- std over seeds); ``all`` is
    drawn at ``total_labels``."""
    figure = go.Figure()
    chosen = table[table["label set"] == label_set_name]
    for scheme, rows in chosen.groupby("scheme"):
        x = [(total_labels or 3000) if str(v) == "all" else int(v) for v in rows["labels"]]
        order = np.argsort(x)
        figure.add_trace(go.Scatter(x=np.asarray(x)[order], y=rows["accuracy"].to_numpy()[order],
                                    error_y=dict(array=rows["accuracy std"].to_numpy()[order]),
                                    mode="lines+markers", name=SCHEME_TITLES.get(scheme, scheme)))
    figure.update_layout(template="plotly_white", height=360, margin=dict(l=10, r=10, t=40, b=10),
                         title=f"Low-data curve: {label_set_name}", xaxis_title="labelled training cutouts",
                         yaxis_title="test accuracy", xaxis_type="log")
    return figure


# ============================================================================ uploads
def classify_uploads(run, files) -> tuple[pd.DataFrame | None, list[str]]:
    """(table of class probabilities, predicted magnitudes, neighbours; or None) and per-file errors
    for ``files`` as (name, bytes) pairs."""
    table, errors = classify_files(run, files)
    return (table.to_pandas() if table is not None else None), errors


def probability_figure(row: pd.Series, classes: list[str]) -> go.Figure:
    values = [float(row[f"p_{c}"]) for c in classes]
    figure = go.Figure(go.Bar(x=classes, y=values, marker_color="#4c78a8"))
    figure.update_layout(template="plotly_white", height=280, margin=dict(l=10, r=10, t=40, b=10),
                         title=f"{row['name']}: class probabilities", yaxis_title="probability",
                         yaxis_range=[0, 1], xaxis_title="class")
    return figure


def magnitude_figure(row: pd.Series, bands) -> go.Figure:
    """Predicted magnitudes against band centre wavelength [Å] (the object's SED; bright is up)."""
    centres = {}
    for survey in SURVEYS.values():
        centres.update(dict(zip(survey.bands, survey.centre_aa)))
    x = [centres.get(b, i) for i, b in enumerate(bands)]
    y = [float(row[f"mag_{b}"]) for b in bands]
    figure = go.Figure(go.Scatter(x=x, y=y, mode="lines+markers", text=list(bands), hovertemplate="%{text}: %{y:.2f}"))
    figure.update_layout(template="plotly_white", height=280, margin=dict(l=10, r=10, t=40, b=10),
                         title="Predicted magnitudes", xaxis_title="band centre wavelength [Å]",
                         yaxis_title="AB magnitude [mag]", yaxis_autorange="reversed")
    return plain_ticks(figure)


def neighbour_rows(row: pd.Series) -> np.ndarray:
    return np.asarray([int(v) for v in str(row["neighbours"]).split(",") if v != ""], int)


def example_files() -> list[tuple[str, bytes]]:
    """The shipped example cutouts (FITS with 12 bands, and its PNG composite) as uploads."""
    return [(path.name, path.read_bytes()) for path in (EXAMPLE_CUTOUT, EXAMPLE_PNG) if path.exists()]
