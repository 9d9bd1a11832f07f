"""The Spectra page's logic: decoder sliders in physical units, re-decoding a star at new
conditional parameters, Teff x log g grids and their FITS / CSV bytes, training options, and the
Evaluate tab's tables against the paper. Plain Python (no Streamlit), tested with pytest."""
from __future__ import annotations

import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning

from ..data.names import label_title, metric_title
from ..data.dataset import LABEL_UNITS, Dataset
from ..data.readers import write_table
from ..embeddings import project, read_coordinates
from ..jobs import embedding_path
from ..methods import registry
from ..runs import RunRecord
from .common import MODE_TITLES, STANDARD_LABELS, use_one_inference_thread


# ============================================================================ generation
@dataclass(frozen=True)
class SliderSpec:
    name: str
    title: str
    low: float
    high: float
    step: float
    train_low: float
    train_high: float
    format: str


_SLIDER_STEPS = {"teff": (10.0, "%d"), "logg": (0.05, "%.2f"), "feh": (0.05, "%.2f"), "afe": (0.02, "%.2f")}
# Physical limits of the sliders: extrapolation is allowed, nonsense is not.
_SLIDER_LIMITS = {"teff": (2000.0, 12000.0), "logg": (-1.0, 6.0), "feh": (-5.0, 1.5), "afe": (-1.0, 1.5)}


def slider_specs(training_range: dict[str, tuple[float, float]], extend: float = 0.25) -> list[SliderSpec]:
    """One slider per conditional parameter: the training range extended by ``extend`` of its span on
    each side (extrapolation is allowed, and flagged), rounded to the slider step."""
    specs = []
    for name, (low, high) in training_range.items():
        step, fmt = _SLIDER_STEPS.get(name, ((high - low) / 100 or 0.01, "%.3g"))
        span = max(high - low, step * 10)
        lo = np.floor((low - extend * span) / step) * step
        hi = np.ceil((high + extend * span) / step) * step
        limit = _SLIDER_LIMITS.get(name)
        if limit:
            lo, hi = max(lo, limit[0]), min(hi, limit[1])
        specs.append(SliderSpec(name, label_title(name), float(round(lo, 6)), float(round(hi, 6)),
                                float(step), float(low), float(high), fmt))
    return specs


def snap(value: float, spec: SliderSpec) -> float:
    """``value`` rounded to the slider's step and clipped to its range."""
    snapped = round(round((float(value) - spec.low) / spec.step) * spec.step + spec.low, 6)
    return float(min(max(snapped, spec.low), spec.high))


def extrapolation_message(values: dict[str, float], training_range: dict[str, tuple[float, float]]) -> str:
    """Readable description of which slider values lie outside the training range ('' if none)."""
    parts = []
    for name, value in values.items():
        low, high = training_range[name]
        if value < low - 1e-6 or value > high + 1e-6:
            unit = LABEL_UNITS.get(name, "")
            parts.append(f"{label_title(name, unit=False)} = {value:g} {unit} is outside the "
                         f"training range {low:g}–{high:g} {unit}".replace("  ", " "))
    return "; ".join(parts)


@dataclass
class StarView:
    """Everything the Generate panel draws for one star at one set of slider values."""

    index: int
    original: np.ndarray
    reconstruction: np.ndarray
    generated: np.ndarray
    true: np.ndarray | None
    extrapolation: bool
    cp_from: dict
    cp_to: dict
    latent: np.ndarray



def rms(a, b) -> float:
    """Root-mean-square difference of two spectra (flux units)."""
    return float(np.sqrt(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)))


def star_conditionals(run, labels: Table, index: int) -> dict[str, float]:
    return {name: float(labels[name][int(index)]) for name in run.conditional}


def encode_star(run, dataset: Dataset, index: int) -> np.ndarray:
    """The star's latent vector (encoded at its own conditional parameters)."""
    cp = star_conditionals(run, dataset.labels, index)
    return run.encode(dataset.spectra[int(index)][None], [[cp[n] for n in run.conditional]])[0]


def true_spectrum(render, labels: Table, index: int, values: dict[str, float]) -> np.ndarray | None:
    """The simulator's noiseless spectrum of this star's chemistry at ``values``, or None."""
    if render is None:
        return None
    row = labels[int(index):int(index) + 1].copy()
    for name, value in values.items():
        if name in row.colnames:
            row[name] = [value]
    try:
        rendered = np.asarray(render(row), dtype=np.float64)
    except Exception:  # a renderer that cannot handle these labels: no truth panel, no crash
        return None
    return rendered[0] if rendered.ndim == 2 else rendered


def star_view(run, dataset: Dataset, index: int, values: dict[str, float], latent: np.ndarray | None = None,
              render=None, base_latent: np.ndarray | None = None) -> StarView:
    """Original, reconstruction, generated (at ``values``, optionally from an edited ``latent``)
    and - when ``render`` is given - the true spectrum at ``values``."""
    use_one_inference_thread()  # per call: Streamlit runs each rerun in a new thread
    index = int(index)
    cp_from = star_conditionals(run, dataset.labels, index)
    base = encode_star(run, dataset, index) if base_latent is None else np.asarray(base_latent, np.float32)
    use = base if latent is None else np.asarray(latent, dtype=np.float32)
    order = list(run.conditional)
    decoded = run.decode(np.stack([base, use]), [[cp_from[n] for n in order], [float(values[n]) for n in order]])
    flags = run.is_extrapolation([[float(values[n]) for n in order]])
    return StarView(index=index, original=dataset.spectra[index], reconstruction=decoded[0], generated=decoded[1],
                    true=true_spectrum(render, dataset.labels, index, values), extrapolation=bool(flags[0]),
                    cp_from=cp_from, cp_to=dict(values), latent=use)


def star_choices(run, dataset: Dataset, include_training: bool = False, own_data: bool = True) -> list[int]:
    """Indices of stars for the star picker: held-out (test) stars first, then - optionally -
    the rest; each ordered by Teff when available."""
    split = run_arrays(run).get("split")
    n = len(dataset)
    if not own_data or split is None or len(split) != n:
        held_out = np.arange(n)
        rest = np.array([], dtype=int)
    else:
        held_out = np.flatnonzero(split == 2)
        rest = np.flatnonzero(split != 2)
    key = np.asarray(dataset.labels["teff"], float) if "teff" in dataset.labels.colnames else np.arange(n)
    ordered = list(held_out[np.argsort(key[held_out], kind="stable")])
    if include_training:
        ordered += list(rest[np.argsort(key[rest], kind="stable")])
    return [int(i) for i in ordered]


def default_star(choices: list[int], dataset: Dataset) -> int:
    """A held-out star near the middle of the Teff-logg grid: a good first example."""
    if not choices:
        return 0
    labels = dataset.labels
    if {"teff", "logg"} <= set(labels.colnames):
        teff = np.asarray(labels["teff"], float)[choices]
        logg = np.asarray(labels["logg"], float)[choices]
        score = np.abs((teff - np.median(teff)) / max(np.ptp(teff), 1.0)) + np.abs(
            (logg - np.median(logg)) / max(np.ptp(logg), 1e-3))
        return int(choices[int(np.argmin(score))])
    return int(choices[len(choices) // 2])


def run_arrays(run) -> dict[str, np.ndarray]:
    """``run.arrays()`` read once per loaded run (the page asks for them on every rerun)."""
    cached = getattr(run, "_app_arrays", None)
    if cached is None:
        cached = run.arrays()
        run._app_arrays = cached
    return cached


def split_names(run, n: int) -> np.ndarray:
    split = run_arrays(run).get("split")
    if split is None or len(split) != n:
        return np.array(["?"] * n)
    return np.array(["train", "validation", "held out"], dtype=object)[np.asarray(split, int)]


def latent_ranges(run) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension (low, high) of the run's latents over its data, padded by 10 %."""
    latent = run_arrays(run)["latent"]
    low, high = latent.min(axis=0), latent.max(axis=0)
    pad = 0.1 * np.maximum(high - low, 1e-3)
    return (low - pad).astype(float), (high + pad).astype(float)


# ============================================================================ embeddings
REPRESENTATIONS = {"z": "latent z of the model", "X": "input spectra X"}
EMBEDDING_METHODS = {"pca": "PCA (instant)", "umap": "UMAP", "tsne": "t-SNE"}


def representation_values(run, dataset: Dataset, representation: str) -> np.ndarray:
    if representation == "z":
        return run_arrays(run)["latent"]
    return dataset.spectra


def pca_coordinates(run, dataset: Dataset, representation: str) -> np.ndarray:
    """PCA of z or X (fast; cached on disk by :func:`astrocore.embeddings.project`)."""
    coordinates, _ = project(representation_values(run, dataset, representation), "pca",
                             key=f"{run.id}/{representation}")
    return coordinates


def read_embedding(run_folder, representation: str, method: str) -> np.ndarray | None:
    """Coordinates written by a background embedding job, or None if not computed yet."""
    return read_coordinates(embedding_path(run_folder, representation, method))


def colour_options(dataset: Dataset) -> list[str]:
    """Labels to colour an embedding by: standard labels first, then other numeric columns, then split."""
    names = [n for n in STANDARD_LABELS if n in dataset.labels.colnames]
    for name in dataset.labels.colnames:
        if name not in names and name != "id" and np.asarray(dataset.labels[name]).dtype.kind in "fiu":
            names.append(name)
    return names + ["split"]


def hover_texts(dataset: Dataset, split: np.ndarray | None = None) -> list[str]:
    """One hover line per object: id and standard labels in physical units."""
    labels = dataset.labels
    n = len(dataset)
    ids = np.asarray(labels["id"]).astype(str) if "id" in labels.colnames else np.arange(n).astype(str)
    parts = [np.char.add("id ", ids)]
    formats = {"teff": ("Teff ", "{:.0f} K"), "logg": ("log g ", "{:.2f}"), "feh": ("[Fe/H] ", "{:+.2f}"),
               "afe": ("[α/Fe] ", "{:+.2f}")}
    for name, (prefix, fmt) in formats.items():
        if name in labels.colnames:
            values = np.asarray(labels[name], float)
            parts.append(np.array([prefix + fmt.format(v) for v in values]))
    if split is not None:
        parts.append(np.asarray(split).astype(str))
    return [" · ".join(row) for row in zip(*parts)]


# ============================================================================ grids and export
def grid_axis(spec: SliderSpec, n: int) -> np.ndarray:
    """``n`` values spanning the training range of one parameter, snapped to the slider step."""
    values = np.linspace(spec.train_low, spec.train_high, max(1, int(n)))
    return np.unique([snap(v, spec) for v in values])


def generate_grid(run, dataset: Dataset, index: int, axes: dict[str, np.ndarray], fixed: dict[str, float] | None = None,
                  latent: np.ndarray | None = None) -> Dataset:
    """One star decoded on the Cartesian product of ``axes`` (e.g. Teff x log g); conditional
    parameters not in ``axes`` stay at ``fixed`` (default: the star's own values).

    Returns a Dataset whose labels hold the generating values, the source star and an
    ``extrapolation`` flag, so it can be saved as FITS/CSV and read back by astrocore.
    """
    index = int(index)
    cp_from = star_conditionals(run, dataset.labels, index)
    fixed = {**cp_from, **(fixed or {})}
    names = list(run.conditional)
    mesh = np.meshgrid(*[np.asarray(axes[n], float) for n in axes], indexing="ij")
    points = {n: m.ravel() for n, m in zip(axes, mesh)}
    count = len(next(iter(points.values()))) if points else 1
    target = np.stack([points.get(n, np.full(count, fixed[n])) for n in names], axis=1)
    base = encode_star(run, dataset, index) if latent is None else np.asarray(latent, np.float32)
    spectra = run.decode(np.repeat(base[None], count, axis=0), target)
    flags = run.is_extrapolation(target)
    table = Table()
    star_id = dataset.labels["id"][index] if "id" in dataset.labels.colnames else index
    table["id"] = [f"{star_id}-gen{i:04d}" for i in range(count)]
    for column, name in enumerate(names):
        table[name] = target[:, column]
    table["source_id"] = [str(star_id)] * count
    for name in names:
        table[f"source_{name}"] = np.full(count, cp_from[name])
    table["extrapolation"] = flags.astype(bool)
    provenance = {"generator": "astrocore-decoder", "run": run.id, "source_index": index,
                  "source_id": str(star_id), "edited_latent": latent is not None,
                  "note": "spectra decoded by a disentangling autoencoder; not observations"}
    return Dataset(spectra.astype(np.float32), np.asarray(run.wavelength, float), table, provenance=provenance)


def single_spectrum_dataset(run, view: StarView, dataset: Dataset) -> Dataset:
    """The currently generated spectrum as a one-row Dataset (for download)."""
    star_id = dataset.labels["id"][view.index] if "id" in dataset.labels.colnames else view.index
    table = Table()
    table["id"] = [f"{star_id}-generated"]
    for name in run.conditional:
        table[name] = [float(view.cp_to[name])]
    table["source_id"] = [str(star_id)]
    for name in run.conditional:
        table[f"source_{name}"] = [float(view.cp_from[name])]
    table["extrapolation"] = [bool(view.extrapolation)]
    provenance = {"generator": "astrocore-decoder", "run": run.id, "source_index": int(view.index),
                  "source_id": str(star_id), "note": "spectrum decoded by a disentangling autoencoder"}
    return Dataset(np.asarray(view.generated, np.float32)[None], np.asarray(run.wavelength, float), table,
                   provenance=provenance)


def fits_bytes(dataset: Dataset) -> bytes:
    """The dataset as an astrocore FITS file (flux image, WAVELENGTH in Å, LABELS table):
    ``astrocore.data.Dataset.load`` and ``read_spectra`` read it back."""
    with tempfile.TemporaryDirectory(prefix="astrocore-export-") as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)  # 'dex' has no FITS unit; Dataset.load restores it
        path = dataset.save(Path(folder) / "spectra.fits")
        return path.read_bytes()


def csv_bytes(dataset: Dataset) -> bytes:
    """The dataset as a wide CSV: label columns, then one ``flux_<wavelength in Å>`` column per
    pixel (the layout ``astrocore.data.readers.read_table`` reads back)."""
    with tempfile.TemporaryDirectory(prefix="astrocore-export-") as folder:
        path = write_table(dataset, Path(folder) / "spectra.csv")
        return path.read_bytes()


def export_name(run_id: str, what: str, extension: str) -> str:
    safe = re.sub(r"[^0-9A-Za-z_.-]+", "_", f"{run_id}-{what}")
    return f"{safe}.{extension}"


# ============================================================================ training options
def parse_lambdas(text: str, conditional) -> tuple[float, ...]:
    """'0.05' or '0.05, 0.02' (one per conditional parameter) -> tuple; ValueError with a message."""
    parts = [p for p in re.split(r"[,\s;]+", str(text).strip()) if p]
    if not parts:
        raise ValueError("Give at least one lambda, e.g. 0.05.")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError as error:
        raise ValueError(f"Lambdas must be numbers, e.g. '0.05' or '0.05, 0.02'; got {text!r}.") from error
    if len(values) not in (1, len(conditional)):
        raise ValueError(f"Give one lambda, or one per conditional parameter ({len(conditional)}: "
                         f"{', '.join(conditional)}); got {len(values)}.")
    if any(v < 0 for v in values):
        raise ValueError("Lambdas must be >= 0.")
    return values


def input_noise_for_snr(snr: float) -> float:
    """The training input noise (``input_noise``: a flux standard deviation in continuum units) of
    spectra at signal-to-noise ``snr``."""
    if not snr > 0:
        raise ValueError(f"S/N must be positive; got {snr}.")
    return 1.0 / float(snr)


def validate_training(mode: str, conditional, preset: str, lambdas, epochs: int | None, overrides: dict | None = None):
    """Build the config the job will build, so a bad choice is reported before starting."""
    extra = dict(overrides or {})
    if lambdas is not None:
        extra["lambdas"] = tuple(lambdas)
    if epochs:
        extra["epochs"] = int(epochs)
    return registry.get("disentangle").config_class.preset(preset, mode=mode, conditional=tuple(conditional), **extra)


def cli_command_text(command: list[str]) -> str:
    """A training command as the user would type it (``astrocore ...``)."""
    parts = list(command)
    if len(parts) > 2 and parts[1:3] == ["-m", "astrocore"]:
        parts = ["astrocore", *parts[3:]]
    return " ".join(f"'{p}'" if (" " in p or "[" in p) else p for p in parts)


# ============================================================================ evaluation
#: R^2 of an MLP probe reported by Santoveña et al. (2024), GANDALF: grid -> conditioned ->
#: label -> representation. Lower is better for conditioned labels, higher for the others.
PAPER_R2 = {
    ("rvs", ("teff", "logg")): {
        "teff": {"X": 0.955, "noat": 0.979, "at": 0.802, "mdat": 0.624},
        "logg": {"X": 0.877, "noat": 0.893, "at": 0.716, "mdat": 0.238},
        "feh": {"X": 0.951, "noat": 0.978, "at": 0.936, "mdat": 0.907},
        "afe": {"X": 0.790, "noat": 0.871, "at": 0.849, "mdat": 0.795},
    },
    ("rvs", ("teff", "logg", "feh", "afe")): {
        "teff": {"X": 0.940, "noat": 0.982, "at": 0.984, "mdat": 0.513},
        "logg": {"X": 0.880, "noat": 0.926, "at": 0.896, "mdat": 0.241},
        "feh": {"X": 0.957, "noat": 0.957, "at": 0.959, "mdat": 0.485},
        "afe": {"X": 0.792, "noat": 0.733, "at": 0.688, "mdat": 0.051},
    },
    ("apogee", ("teff", "logg")): {
        "teff": {"X": 0.997, "noat": 0.990, "at": 0.891, "mdat": 0.224},
        "logg": {"X": 0.985, "noat": 0.819, "at": 0.590, "mdat": 0.144},
    },
}


def paper_key(record: RunRecord) -> tuple[str, tuple[str, ...]] | None:
    """The paper grid comparable to a run: ('rvs'|'apogee', conditioned labels) or None."""
    data = record.data or {}
    generator = data.get("generator") if data.get("kind") == "simulator" else None
    grid = {"rvs": "rvs", "apogee": "apogee", "payne": "apogee"}.get(generator or "")
    conditional = tuple(n for n in STANDARD_LABELS if n in record.config.get("conditional", []))
    key = (grid, conditional)
    return key if key in PAPER_R2 else None


def paper_table(key) -> pd.DataFrame:
    """The paper's R^2 for one grid as a table (rows: labels; columns X, noAT, AT, mdAT)."""
    values = PAPER_R2[key]
    rows = {label_title(label): {name: values[label].get(mode) for mode, name in
                                            (("X", "X"), ("noat", "noAT"), ("at", "AT"), ("mdat", "mdAT"))}
            for label in values}
    return pd.DataFrame(rows).T


def r2_comparison(evaluated: list[tuple[RunRecord, dict]], probe: str = "r2") -> pd.DataFrame:
    """R^2 per label: X and each run's latent (named by its mode) beside the paper's numbers.

    Rows are labels ("Teff [K] (conditioned)"), columns "X", "noAT", "AT", "mdAT" (a run id is
    appended when two runs share a mode) and "paper X", "paper noAT", ... when a comparable grid is
    in the paper. ``probe`` is "r2" (MLP, the paper's probe) or "r2_knn".
    """
    if not evaluated:
        return pd.DataFrame()
    conditional = set()
    for record, _ in evaluated:
        conditional.update(record.config.get("conditional", []))
    labels = [n for n in STANDARD_LABELS if any(n in (ev.get(probe) or {}) for _, ev in evaluated)]
    columns: dict[str, dict] = {}
    x_scores = next(((ev.get("X") or {}).get(probe) for _, ev in evaluated if (ev.get("X") or {}).get(probe)), None)
    if x_scores:
        columns["X"] = x_scores
    mode_counts: dict[str, int] = {}
    for record, _ in evaluated:
        mode = MODE_TITLES.get(record.config.get("mode", ""), "?")
        mode_counts[mode] = mode_counts.get(mode, 0) + 1
    for record, evaluation in evaluated:
        mode = MODE_TITLES.get(record.config.get("mode", ""), "?")
        name = mode if mode_counts[mode] == 1 else f"{mode} ({record.id})"
        columns[name] = evaluation.get(probe) or {}
    key = paper_key(evaluated[0][0])
    if key is not None and probe == "r2":
        paper = PAPER_R2[key]
        for mode, title in (("X", "X"), ("noat", "noAT"), ("at", "AT"), ("mdat", "mdAT")):
            columns[f"paper {title}"] = {label: paper[label][mode] for label in paper}
    index = [f"{label_title(n)}{' (conditioned)' if n in conditional else ''}" for n in labels]
    table = pd.DataFrame({name: [values.get(n, np.nan) for n in labels] for name, values in columns.items()},
                         index=index)
    return table


def formatted(table: pd.DataFrame, fmt: str = "{:.3f}", missing: str = "–") -> pd.DataFrame:
    """Numbers as display strings, with ``missing`` for NaN/None (Streamlit shows NaN as 'None')."""
    def show(value):
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return missing
        if isinstance(value, (int, float, np.integer, np.floating)):
            return fmt.format(value)
        return str(value)

    return table.apply(lambda column: column.map(show))


TWINS_COLUMN = metric_title("twins_top10")


def twins_table(evaluated: list[tuple[RunRecord, dict]]) -> pd.DataFrame:
    """Chemical-twins score (top-10 neighbours sharing the fingerprint at other Teff/logg) of X and
    of each run's latent."""
    rows = []
    x_twins = next(((ev.get("X") or {}).get("twins_top10") for _, ev in evaluated
                    if (ev.get("X") or {}).get("twins_top10") is not None), None)
    if x_twins is not None:
        rows.append({"representation": "X (input spectra)", TWINS_COLUMN: x_twins})
    for record, evaluation in evaluated:
        if evaluation.get("twins_top10") is not None:
            rows.append({"representation": f"z {MODE_TITLES.get(record.config.get('mode'), '?')} ({record.id})",
                         TWINS_COLUMN: evaluation["twins_top10"]})
    return pd.DataFrame(rows)


def recon_by_parameter_table(evaluated: list[tuple[RunRecord, dict]]) -> pd.DataFrame:
    """Held-out reconstruction error in bins of the first conditional parameter, one row per run and
    bin: ``run``, ``parameter``, ``low``, ``high``, ``bin`` (its range as text), ``recon MSE``,
    ``count``. Empty when no evaluation has the breakdown (evaluations older than it)."""
    rows = []
    for record, evaluation in evaluated:
        breakdown = evaluation.get("recon_mse_by_cp")
        if not breakdown:
            continue
        name = f"{MODE_TITLES.get(record.config.get('mode'), '?')} ({record.id})"
        for low, high, mean, count in zip(breakdown["low"], breakdown["high"], breakdown["mean"], breakdown["count"]):
            label = f"{low:g}" if low == high else f"{low:g}–{high:g}"
            rows.append({"run": name, "parameter": breakdown["parameter"], "low": low, "high": high,
                         "bin": label, "recon MSE": mean, "count": count})
    return pd.DataFrame(rows, columns=["run", "parameter", "low", "high", "bin", "recon MSE", "count"])


def evaluation_metrics_table(evaluated: list[tuple[RunRecord, dict]]) -> pd.DataFrame:
    rows = []
    for record, evaluation in evaluated:
        row = {"run": record.id, "mode": MODE_TITLES.get(record.config.get("mode"), "?")}
        for key in ("recon_rms", "gen_rmse", "gen_rmse_extrap", "decode_ms", "twins_top10"):
            if key in evaluation:
                row[metric_title(key)] = evaluation[key]
        rows.append(row)
    return pd.DataFrame(rows)


def sample_source(record) -> dict | None:
    """The data source of the held-out sample shipped with a run (``sample.fits`` in its folder,
    see ``assets/make_default_models.py``), or None. It names the simulator, so the true spectrum
    at other Teff and log g can still be rendered."""
    path = Path(record.path) / "sample.fits"
    if not path.exists():
        return None
    generator = record.data.get("generator") if record.data.get("kind") == "simulator" else None
    return {"kind": "file", "path": str(path.resolve()), **({"generator": generator} if generator else {})}


def training_phases(preset: str, epochs: int | None = None) -> str:
    """What a disentangler's training will do, in words: its epochs and later phases (e.g. "10 epochs of
    adversarial training, 200 twin-code steps, 5 epochs of decoder refit")."""
    config = registry.get("disentangle").config_class.preset(preset, **({"epochs": int(epochs)} if epochs else {}))
    parts = [f"{config.epochs} epochs of {'adversarial ' if config.mode != 'noat' else ''}training"]
    if config.twin_code_steps:
        parts.append(f"{config.twin_code_steps} twin-code steps (when the data have twins)")
    if config.decoder_refit_epochs:
        parts.append(f"{config.decoder_refit_epochs} epochs of decoder refit")
    text = ", ".join(parts)
    if config.latent_candidates:
        sizes = ", ".join(str(size) for size in config.latent_candidates)
        text = (f"{text}; all of it once per latent size ({sizes}), then the size chosen on the validation "
                "stars is kept")
    return text


def upload_novelty(run, dataset: Dataset, max_spectra: int = 256) -> str | None:
    """A warning, with the numbers, when uploaded spectra are unlike the run's training data: their
    median reconstruction RMS (flux units) beyond 3x the 95th percentile of the run's held-out
    spectra. None when they look like the training data or cannot be checked (no conditional labels
    in the file, or a run without reconstruction errors)."""
    arrays = run.arrays()
    if "recon_mse" not in arrays or not all(name in dataset.labels.colnames for name in run.conditional):
        return None
    rows = np.arange(min(len(dataset), max_spectra))
    flux = np.asarray(dataset.spectra[rows], np.float32)
    cp = np.column_stack([np.asarray(dataset.labels[name], float)[rows] for name in run.conditional])
    usable = np.isfinite(cp).all(1) & np.isfinite(flux).all(1)
    if not usable.any():
        return None
    rebuilt = run.decode(run.encode(flux[usable], cp[usable]), cp[usable])
    rms = float(np.median(np.sqrt(np.mean((rebuilt - flux[usable]) ** 2, axis=1))))
    split = np.asarray(arrays.get("split", np.full(len(arrays["recon_mse"]), 2)))
    errors = np.asarray(arrays["recon_mse"])
    typical = float(np.sqrt(np.percentile(errors[split == 2] if np.any(split == 2) else errors, 95)))
    if rms <= 3 * typical:
        return None
    return (f"These spectra are unlike the model's training data: it reconstructs them with a median RMS of "
            f"{rms:.3g} (flux units) over {int(usable.sum())} spectra, while 95 % of its held-out spectra are "
            f"below {typical:.3g}. Latents, neighbours and generated spectra of these stars are extrapolations.")
