"""Logic of the Multimodal BHB page (BATMM), free of Streamlit: runs, the training command, the
comparison table, the figures (ROC / PR, reliability, attention over wavelength and over the
image, spectrum and cutout of a star) and the upload of one star."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from astropy.table import Table
from plotly.subplots import make_subplots

from ..data.dataset import DataError
from ..methods.batmm.bench import MODELS, PAPER_F1
from ..methods.batmm.metrics import curves, reliability
from ..methods.batmm.predict import explain, read_star
from ..methods.batmm.run import BatmmRun
from .common import finished_runs
from .plots import plain_ticks

ROOT = Path(__file__).resolve().parents[2]
BENCH_FILE = ROOT / "benchmarks" / "batmm_fast.json"
EXAMPLE_SPECTRUM = ROOT / "assets" / "example_bhb_spectrum.fits"
EXAMPLE_CUTOUT = ROOT / "assets" / "example_bhb_cutout.fits"
BANDS = ("u", "g", "r", "i", "z")
MAX_UPLOAD_MB = 20
SPECTRUM_SUFFIXES = (".fits", ".fit", ".fits.gz", ".csv")
CUTOUT_SUFFIXES = (".fits", ".fit", ".fits.gz", ".png", ".jpg", ".jpeg")
MODEL_TITLES = {
    "batmm": "BATMM (fusion transformer)", "image_only": "Image only (ResNet + SE)",
    "spectrum_only": "Spectrum only (VGG1D)", "spectrum_only_attention": "Spectrum only (VGG1D + attention)",
    "early_add": "Early fusion: add", "early_concat": "Early fusion: concatenate", "vgg1d_fusion": "VGG1D fusion",
    "svm": "SVM (spectra)", "gradient_boosting": "Gradient boosting (spectra)",
    "rule": "Physics rule (H-delta D0.2 + u-g)", "no_cross_attention": "Ablation: no cross-attention",
    "no_modality_embedding": "Ablation: no modality embedding",
}


# ============================================================================ runs and training
def batmm_runs(folder=None):
    """Finished BATMM runs, newest first."""
    return finished_runs(folder, method="batmm")


def run_label(record) -> str:
    test = record.metrics.get("test", {})
    params = record.data.get("params", {})
    data = f"{params.get('n_stars', '?')} simulated stars, S/N {params.get('snr', '?')}" if params else "file"
    return f"{record.id} · F1 {test.get('f1', float('nan')):.3f} · {data}"


def training_arguments(n_stars: int, snr: float, data_seed: int, seed: int, preset: str = "fast",
                       encoder_epochs: int | None = None, fusion_epochs: int | None = None) -> list[str]:
    """The ``astrocore train batmm`` arguments for the page's settings (validated here)."""
    if not 100 <= int(n_stars) <= 50_000:
        raise DataError(f"Simulate 100-50,000 stars; got {n_stars}.")
    if not 1 <= float(snr) <= 500:
        raise DataError(f"S/N must be 1-500; got {snr}.")
    arguments = ["--n", str(int(n_stars)), "--snr", str(float(snr)), "--data-seed", str(int(data_seed)),
                 "--seed", str(int(seed)), "--preset", preset]
    overrides = []
    if encoder_epochs:
        overrides.append(f"encoder_epochs={int(encoder_epochs)}")
    if fusion_epochs:
        overrides.append(f"fusion_epochs={int(fusion_epochs)}")
    return arguments + (["--set", *overrides] if overrides else [])


def phase_text(status: dict) -> str:
    metrics = status.get("metrics", {})
    parts = [metrics.get("phase", "preparing the data")]
    if "epoch" in metrics:
        parts.append(f"epoch {int(metrics['epoch']) + 1}")
    if "val_accuracy" in metrics:
        parts.append(f"validation accuracy {metrics['val_accuracy']:.3f}")
    parts.append(f"{status.get('elapsed', 0):.0f} s")
    return " · ".join(parts)


# ============================================================================ comparison
def read_bench(path=BENCH_FILE) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def comparison_table(bench: dict | None, record=None) -> Table:
    """One row per model: F1 / precision / recall (mean +- std over the bench's seeds, %) and the
    paper's F1 (Wei et al. 2023, Table 8); plus this run's own test scores when ``record`` is given."""
    rows = []
    for name in MODELS:
        row = {"model": MODEL_TITLES[name], "key": name}
        scores = (bench or {}).get("models", {}).get(name)
        for metric in ("f1", "precision", "recall"):
            row[f"{metric}_mean_pct"] = 100 * scores[metric]["mean"] if scores else np.nan
            row[f"{metric}_std_pct"] = 100 * scores[metric]["std"] if scores else np.nan
        row["paper_f1_pct"] = np.nan if PAPER_F1[name] is None else PAPER_F1[name]
        own = None
        if record is not None:
            own = {"batmm": record.metrics.get("test"), "image_only": record.metrics.get("image_only"),
                   "spectrum_only_attention": record.metrics.get("spectrum_only_attention")}.get(name)
        row["this_run_f1_pct"] = 100 * own["f1"] if own else np.nan
        rows.append(row)
    return Table(rows=rows, names=list(rows[0]))


def table_csv(table: Table) -> bytes:
    from io import StringIO

    buffer = StringIO()
    table.write(buffer, format="ascii.csv")
    return buffer.getvalue().encode()


# ============================================================================ figures
def _test_arrays(run: BatmmRun) -> tuple[np.ndarray, np.ndarray, dict]:
    arrays = run.arrays()
    test = arrays["split"] == 2
    return arrays["label"][test], arrays["probability"][test], {k: v[test] for k, v in arrays.items()}


def roc_pr_figure(run: BatmmRun) -> go.Figure:
    """ROC and precision-recall curves of the run's test split (BATMM and its two encoders)."""
    label, _, arrays = _test_arrays(run)
    figure = make_subplots(1, 2, subplot_titles=("ROC", "Precision-recall"))
    for name, logit in (("BATMM", arrays["logit"]), ("spectrum only", arrays["spectrum_logit"]),
                        ("image only", arrays["image_logit"])):
        c = curves(label, 1 / (1 + np.exp(-logit)))
        figure.add_scatter(x=c["fpr"], y=c["tpr"], name=name, legendgroup=name, row=1, col=1)
        figure.add_scatter(x=c["recall"], y=c["precision"], name=name, legendgroup=name, showlegend=False, row=1, col=2)
    figure.update_xaxes(title_text="false positive rate", range=[0, 1], row=1, col=1)
    figure.update_yaxes(title_text="true positive rate", range=[0, 1.02], row=1, col=1)
    figure.update_xaxes(title_text="recall (BHB)", range=[0, 1], row=1, col=2)
    figure.update_yaxes(title_text="precision (BHB)", range=[0, 1.02], row=1, col=2)
    figure.update_layout(height=380, margin=dict(t=40, b=40))
    return figure


def reliability_figure(run: BatmmRun) -> tuple[go.Figure, float]:
    """Reliability diagram of the calibrated test probabilities; returns (figure, ECE)."""
    label, probability, _ = _test_arrays(run)
    result = reliability(label, probability)
    figure = go.Figure()
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="perfect")
    figure.add_scatter(x=result["confidence"], y=result["observed"], mode="lines+markers", name="BATMM (calibrated)",
                       text=[f"{n} stars" for n in result["counts"]])
    figure.update_layout(xaxis_title="predicted P(BHB)", yaxis_title="observed BHB fraction", height=340,
                         margin=dict(t=30, b=40))
    return figure, result["ece"]


def segment_weights_figure(weights, edges_aa, wavelength=None, flux=None) -> go.Figure:
    """Spectral-segment attention weights as bars over wavelength [Angstrom], with the spectrum."""
    weights, edges = np.asarray(weights, float), np.asarray(edges_aa, float)
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_bar(x=0.5 * (edges[:-1] + edges[1:]), y=weights, width=np.diff(edges) * 0.95, name="segment weight",
                   marker_color="rgba(99,110,250,0.45)", secondary_y=False)
    if wavelength is not None and flux is not None:
        figure.add_scatter(x=wavelength, y=flux, mode="lines", line=dict(width=1, color="black"), name="spectrum",
                           secondary_y=True)
    figure.update_xaxes(title_text="wavelength [Angstrom]")
    figure.update_yaxes(title_text="attention weight (sums to 1)", secondary_y=False, rangemode="tozero")
    figure.update_yaxes(title_text="flux [1e-17 erg s^-1 cm^-2 A^-1]", secondary_y=True)
    figure.update_layout(height=340, margin=dict(t=30, b=40), legend=dict(orientation="h"))
    return plain_ticks(figure)


def band_weights_figure(weights: dict) -> go.Figure:
    """SE band weights (sum to 1) per SDSS band."""
    figure = go.Figure(go.Bar(x=list(weights), y=list(weights.values()),
                              marker_color=["#7b3294", "#1a9641", "#d7191c", "#fdae61", "#636363"]))
    figure.add_hline(y=1 / len(weights), line_dash="dot", annotation_text="equal weights")
    figure.update_layout(xaxis_title="SDSS band", yaxis_title="SE weight (sums to 1)", height=300,
                         margin=dict(t=30, b=40))
    return figure


def cross_attention_figures(maps, edges_aa, layer: int = 0, head: int | None = None) -> tuple[go.Figure, go.Figure]:
    """Cross-attention of one layer (``head`` None: mean over heads): (1) how much the image
    tokens attend to each spectral segment, over wavelength; (2) how strongly each 4 x 4 image
    position attends to the spectrum's most attended segment, over the image."""
    maps = np.asarray(maps, float)[layer]  # (heads, image tokens, spectral tokens)
    matrix = maps.mean(axis=0) if head is None else maps[head]
    edges = np.asarray(edges_aa, float)
    segments = matrix[:, :-1]  # the last spectral token is the pooled one
    per_segment = segments.mean(axis=0)
    wavelength = go.Figure(go.Bar(x=0.5 * (edges[:-1] + edges[1:]), y=per_segment, width=np.diff(edges) * 0.95,
                                  name="mean attention"))
    wavelength.add_hline(y=float(matrix[:, -1].mean()), line_dash="dot", annotation_text="pooled spectral token")
    plain_ticks(wavelength).update_layout(xaxis_title="wavelength [Angstrom]", yaxis_title="attention from image tokens",
                             height=300, margin=dict(t=30, b=40))
    target = int(np.argmax(per_segment))
    grid = segments[:16, target].reshape(4, 4)
    image = go.Figure(go.Heatmap(z=grid, x=np.arange(4) * 8 + 4, y=np.arange(4) * 8 + 4, colorscale="Viridis",
                                 colorbar=dict(title="attention")))
    image.update_layout(title=f"attention to {edges[target]:.0f}-{edges[target + 1]:.0f} A", height=300,
                        xaxis_title="x [pixels of 0.396 arcsec]", yaxis_title="y [pixels]", margin=dict(t=40, b=40))
    image.update_yaxes(scaleanchor="x")
    return wavelength, image


def cutout_figure(cube: np.ndarray, pixel_scale: float = 0.396) -> go.Figure:
    """The five bands of a cutout with an asinh stretch per band; axes in arcsec."""
    cube = np.asarray(cube, float)
    figure = make_subplots(1, len(cube), subplot_titles=BANDS[:len(cube)], horizontal_spacing=0.02)
    extent = (np.arange(cube.shape[-1]) - cube.shape[-1] / 2) * pixel_scale
    for b, plane in enumerate(cube):
        noise = 1.4826 * np.median(np.abs(plane - np.median(plane))) or 1.0
        figure.add_heatmap(z=np.arcsinh(plane / (3 * noise)), x=extent, y=extent, colorscale="gray", showscale=False,
                           row=1, col=b + 1)
        figure.update_xaxes(title_text="arcsec", row=1, col=b + 1)
    figure.update_layout(height=240, margin=dict(t=30, b=30, l=10, r=10))
    return figure


# ============================================================================ uploads
def check_upload(name: str, size: int, allowed) -> None:
    """Refuse files of the wrong type or too large, with a message saying what was expected."""
    lower = name.lower()
    if not lower.endswith(tuple(allowed)):
        raise DataError(f"{name}: expected one of {', '.join(allowed)}.")
    if size > MAX_UPLOAD_MB * 1024 * 1024:
        raise DataError(f"{name} is {size / 1e6:.1f} MB; uploads may be at most {MAX_UPLOAD_MB} MB.")


def classify_upload(run: BatmmRun, spectrum: tuple[str, bytes] | None, cutouts: list[tuple[str, bytes]]) -> dict:
    """One uploaded star -> the run's verdict (see :func:`astrocore.methods.batmm.predict.explain`)
    plus the data read (``flux`` on the 3522-pixel grid, ``cutout`` (5, h, w)) for the figures."""
    if spectrum is None and not cutouts:
        raise DataError("Upload a spectrum, a ugriz cutout or both.")
    if spectrum is not None:
        check_upload(spectrum[0], len(spectrum[1]), SPECTRUM_SUFFIXES)
    for name, data in cutouts:
        check_upload(name, len(data), CUTOUT_SUFFIXES)
    if cutouts and len(cutouts) not in (1, len(BANDS)):
        raise DataError(f"Upload one multi-band cutout file or {len(BANDS)} files (one per band); got {len(cutouts)}.")
    flux, cube, notes = read_star(
        None if spectrum is None else spectrum[1], [data for _, data in cutouts] or None,
        None if spectrum is None else spectrum[0], [name for name, _ in cutouts] or None)
    try:
        verdict = explain(run, flux, cube)
    except (ValueError, TypeError, RuntimeError) as error:  # shapes the model cannot take, as a message
        raise DataError(f"The uploaded star could not be classified: {type(error).__name__}: {str(error)[:200]}") from error
    return {**verdict, **notes, "flux": flux, "cutout": cube}


def example_upload() -> tuple[tuple[str, bytes], list[tuple[str, bytes]]]:
    """The shipped example star (assets/example_bhb_*.fits) as uploads."""
    return ((EXAMPLE_SPECTRUM.name, EXAMPLE_SPECTRUM.read_bytes()), [(EXAMPLE_CUTOUT.name, EXAMPLE_CUTOUT.read_bytes())])
