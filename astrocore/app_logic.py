"""The app's non-UI logic: everything the pages need that is not a widget or a chart.

Choosing the default run, describing datasets, slider ranges in physical units, re-decoding a star
at new conditional parameters, Teff x log g grids of generated spectra and their FITS / CSV bytes,
the paper's R^2 numbers, loss curves from the progress log, config diffs between runs, and the
validation of uploaded files. Plain Python (no Streamlit): the pages stay thin and this module is
tested with pytest.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.table import Table

from .data.dataset import LABEL_TITLES, LABEL_UNITS, DataError, Dataset
from .runs import RunRecord, list_runs, read_history, runs_dir

STANDARD_LABELS = ("teff", "logg", "feh", "afe")
MODE_TITLES = {"noat": "noAT", "at": "AT", "mdat": "mdAT"}
DEFAULT_RUN_PREFIX = "default-"
MAX_UPLOAD_MB = 200


# ============================================================================ environment
def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def default_model_settings() -> dict:
    """What the first visit trains when there is no run yet (tunable by environment variables,
    e.g. tiny values in the tests): a fast mdAT model on the APOGEE-like grid."""
    data = os.environ.get("ASTROCORE_DEFAULT_DATA", "apogee")
    return {
        "data": data,
        "n_stars": env_int("ASTROCORE_DEFAULT_NSTARS", 16 if data == "apogee" else 3000),
        "data_seed": 0,
        "mode": "mdat",
        "conditional": ("teff", "logg"),
        "preset": "fast",
        "epochs": env_int("ASTROCORE_DEFAULT_EPOCHS", 10),
        "run_id": f"{DEFAULT_RUN_PREFIX}{data}-mdat",
    }


def device_description() -> str:
    from .training import device_description as describe

    return describe()


# ============================================================================ runs
def finished_runs(folder=None, method: str = "disentangle") -> list[RunRecord]:
    return [r for r in list_runs(folder) if r.status == "done" and r.method == method]


def choose_default_run(records: list[RunRecord]) -> RunRecord | None:
    """The run the Spectra page opens with: the newest finished ``default-*`` run, else the newest
    finished disentangling run, else None."""
    done = [r for r in records if r.status == "done" and r.method == "disentangle"]
    defaults = [r for r in done if r.id.startswith(DEFAULT_RUN_PREFIX)]
    pool = defaults or done
    return max(pool, key=lambda r: r.created) if pool else None


def source_label(source: dict) -> str:
    """A short human description of a data source dict."""
    if not source:
        return "unknown data"
    if source.get("kind") == "simulator":
        params = source.get("params", {})
        generator = source.get("generator")
        if generator == "apogee":
            return f"APOGEE-like, {params.get('n_fingerprints', '?')} fingerprints, seed {params.get('seed', 0)}"
        if generator == "rvs":
            return f"RVS-like, {params.get('n_stars', '?')} stars, seed {params.get('seed', 0)}"
        if generator == "payne":
            count = f", {params['n_fingerprints']} fingerprints" if params.get("n_fingerprints") else ""
            return f"Payne emulator {Path(str(params.get('path', '?'))).name}{count}, seed {params.get('seed', 0)}"
        return str(generator)
    if source.get("kind") == "file":
        return f"file {Path(source.get('path', '?')).name}"
    return str(source.get("kind", "data"))


def run_label(record: RunRecord) -> str:
    config = record.config
    mode = MODE_TITLES.get(config.get("mode", ""), config.get("mode", ""))
    cp = ",".join(config.get("conditional", []))
    return f"{record.id} · {mode} | {cp} · {source_label(record.data)}"


def run_stamp(record: RunRecord) -> float:
    """Changes when a run is rewritten (cache key next to the run id)."""
    try:
        return (Path(record.path) / "run.json").stat().st_mtime
    except OSError:
        return 0.0


def load_run(path):
    """Load a finished run for interactive use (see :func:`use_one_inference_thread`)."""
    from .runs import load_run as load

    use_one_inference_thread()
    return load(path)


def use_one_inference_thread() -> None:
    """Decode with one torch thread in the app's process.

    Decoding one spectrum is a fraction of a millisecond of work; with several intra-op threads on
    a busy 2-core machine the threads wait for each other and the same call takes tens of
    milliseconds (measured: 36 ms -> 0.5 ms). Training runs in its own processes, unaffected.
    The setting is per OS thread (OpenMP), so it is applied again on every decode.
    """
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


# ============================================================================ data
def source_to_json(source: dict) -> str:
    return json.dumps(source, sort_keys=True, default=str)


def dataset_from_json(source_json: str) -> Dataset:
    from .data import dataset_from_source

    return dataset_from_source(json.loads(source_json))


def renderer_from_json(source_json: str):
    """The simulator's noiseless renderer for this source, or None (real data / no emulator)."""
    from .data import renderer_for

    try:
        return renderer_for(json.loads(source_json))
    except (ImportError, DataError, OSError, ValueError):
        return None


def simulator_source(generator: str, n_stars: int, seed: int = 0) -> dict:
    """The source dict ``load_source`` would build for a built-in simulator (without building)."""
    from .data import SIMULATORS, source_for

    if generator not in SIMULATORS:
        raise ValueError(f"unknown simulator {generator!r}; choose 'apogee' or 'rvs'.")
    return source_for(generator, n_stars, seed)


def payne_source(path, n_fingerprints: int = 60, seed: int = 0) -> dict:
    """As ``load_source("payne:PATH", n_stars=n_fingerprints, seed=seed)`` builds it: chemistries of
    the emulator, each rendered on the giant Teff x log g grid."""
    from .data import source_for

    return source_for(f"payne:{path}", n_fingerprints, seed)


def file_source(path) -> dict:
    return {"kind": "file", "path": str(Path(path).resolve())}


def cli_data_arguments(source: dict) -> dict:
    """``--data/--n-stars/--data-seed`` of ``astrocore train`` that rebuild ``source``."""
    if source.get("kind") == "simulator":
        params = source.get("params", {})
        generator = source["generator"]
        if generator == "apogee":
            return {"data": "apogee", "n_stars": params.get("n_fingerprints"), "data_seed": params.get("seed", 0)}
        if generator == "rvs":
            return {"data": "rvs", "n_stars": params.get("n_stars"), "data_seed": params.get("seed", 0)}
        if generator == "payne":
            return {"data": f"payne:{params['path']}", "n_stars": params.get("n_fingerprints"),
                    "data_seed": params.get("seed", 0)}
    if source.get("kind") == "file":
        return {"data": source["path"], "n_stars": None, "data_seed": 0}
    raise ValueError(f"cannot train from {source!r}")


def dataset_summary(dataset: Dataset) -> dict:
    """Counts, wavelength range and a label-range table (physical units) for display."""
    summary = dataset.summary()
    rows = []
    for name, (low, high) in summary["label_ranges"].items():
        unit = str(dataset.labels[name].unit) if dataset.labels[name].unit is not None else ""
        rows.append({"label": LABEL_TITLES.get(name, name), "min": low, "max": high, "unit": unit,
                     "distinct values": int(len(np.unique(np.asarray(dataset.labels[name]))))})
    step = np.median(np.diff(dataset.wavelength)) if dataset.n_pixels > 1 else 0.0
    return {
        "n_objects": summary["n_objects"],
        "n_pixels": summary["n_pixels"],
        "wavelength": summary["wavelength_aa"],
        "pixel_step": float(step),
        "generator": summary["generator"],
        "labels": pd.DataFrame(rows),
        "n_fingerprints": (int(len(np.unique(np.asarray(dataset.labels["fingerprint"]))))
                           if "fingerprint" in dataset.labels.colnames else None),
    }


def example_indices(dataset: Dataset, k: int = 4, label: str = "teff") -> np.ndarray:
    """``k`` objects spread over ``label`` (e.g. cool to hot) for an example plot."""
    n = len(dataset)
    if n <= k:
        return np.arange(n)
    if label in dataset.labels.colnames:
        order = np.argsort(np.asarray(dataset.labels[label], dtype=float), kind="stable")
        return order[np.linspace(0, n - 1, k).round().astype(int)]
    return np.linspace(0, n - 1, k).round().astype(int)


def describe_object(labels: Table, index: int, names=STANDARD_LABELS) -> str:
    row = labels[int(index)]
    parts = [f"id {row['id']}"] if "id" in labels.colnames else [f"#{index}"]
    formats = {"teff": "Teff {:.0f} K", "logg": "log g {:.2f}", "feh": "[Fe/H] {:+.2f}", "afe": "[α/Fe] {:+.2f}"}
    for name in names:
        if name in labels.colnames:
            parts.append(formats.get(name, name + " {:.3g}").format(float(row[name])))
    return " · ".join(parts)


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
        specs.append(SliderSpec(name, LABEL_TITLES.get(name, name), float(round(lo, 6)), float(round(hi, 6)),
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
            parts.append(f"{LABEL_TITLES.get(name, name).split(' [')[0]} = {value:g} {unit} is outside the "
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
    from .embeddings import project

    coordinates, _ = project(representation_values(run, dataset, representation), "pca",
                             key=f"{run.id}/{representation}")
    return coordinates


def read_embedding(run_folder, representation: str, method: str) -> np.ndarray | None:
    """Coordinates written by a background embedding job, or None if not computed yet."""
    from .embeddings import read_coordinates
    from .jobs import embedding_path

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
    import warnings

    from astropy.utils.exceptions import AstropyUserWarning

    with tempfile.TemporaryDirectory(prefix="astrocore-export-") as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)  # 'dex' has no FITS unit; Dataset.load restores it
        path = dataset.save(Path(folder) / "spectra.fits")
        return path.read_bytes()


def csv_bytes(dataset: Dataset) -> bytes:
    """The dataset as a wide CSV: label columns, then one ``flux_<wavelength in Å>`` column per
    pixel (the layout ``astrocore.data.readers.read_table`` reads back)."""
    from .data.readers import write_table

    with tempfile.TemporaryDirectory(prefix="astrocore-export-") as folder:
        path = write_table(dataset, Path(folder) / "spectra.csv")
        return path.read_bytes()


def export_name(run_id: str, what: str, extension: str) -> str:
    safe = re.sub(r"[^0-9A-Za-z_.-]+", "_", f"{run_id}-{what}")
    return f"{safe}.{extension}"


# ============================================================================ uploads
class UploadError(ValueError):
    """An uploaded file was refused; the message says why, in words for the page."""


SPECTRA_EXTENSIONS = (".fits", ".fit", ".fits.gz", ".fit.gz", ".csv", ".ecsv", ".txt", ".npz", ".zip")
PAYNE_EXTENSIONS = (".npz",)


def uploads_dir() -> Path:
    from .data.cache import cache_dir

    folder = cache_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _extension(name: str) -> str:
    lowered = name.lower()
    for extension in sorted(set(SPECTRA_EXTENSIONS + PAYNE_EXTENSIONS), key=len, reverse=True):
        if lowered.endswith(extension):
            return extension
    return Path(lowered).suffix


def validate_upload(name: str, size: int, allowed=SPECTRA_EXTENSIONS, max_mb: float = MAX_UPLOAD_MB) -> str:
    """Check name and size; returns the extension or raises :class:`UploadError`."""
    if not name:
        raise UploadError("The uploaded file has no name.")
    extension = _extension(name)
    if extension not in allowed:
        raise UploadError(f"{name}: files of type '{extension or '(none)'}' are not accepted here; "
                          f"upload one of {', '.join(allowed)}.")
    if size <= 0:
        raise UploadError(f"{name} is empty (0 bytes).")
    if size > max_mb * 1024 * 1024:
        raise UploadError(f"{name} is {size / 1024 / 1024:.0f} MB; the limit is {max_mb:.0f} MB.")
    return extension


def _safe_extract(archive: zipfile.ZipFile, target: Path, max_total_mb: float = 2 * MAX_UPLOAD_MB) -> None:
    """Extract a zip refusing absolute paths, '..' components and zip bombs."""
    total = 0
    for member in archive.infolist():
        parts = Path(member.filename).parts
        if member.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise UploadError(f"the zip contains an unsafe path {member.filename!r}.")
        total += member.file_size
        if total > max_total_mb * 1024 * 1024:
            raise UploadError(f"the zip unpacks to more than {max_total_mb:.0f} MB.")
    archive.extractall(target)


def store_upload(name: str, data: bytes, allowed=SPECTRA_EXTENSIONS, max_mb: float = MAX_UPLOAD_MB) -> Path:
    """Validate and save an upload under the cache (content-addressed, so re-uploads are free).

    A zip is unpacked and the folder holding ``X.npy`` (GANDALF) or ``spectra.npz`` (astrocore) is
    returned; other files are returned as saved.
    """
    extension = validate_upload(name, len(data), allowed, max_mb)
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = uploads_dir() / digest
    safe_name = re.sub(r"[^0-9A-Za-z_.-]+", "_", Path(name).name) or f"upload{extension}"
    if extension == ".zip":
        unpacked = folder / "unpacked"
        if not unpacked.exists():
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    staging = Path(tempfile.mkdtemp(dir=uploads_dir(), prefix=".unzip-"))
                    try:
                        _safe_extract(archive, staging)
                        folder.mkdir(parents=True, exist_ok=True)
                        os.replace(staging, unpacked)
                    finally:
                        shutil.rmtree(staging, ignore_errors=True)
            except zipfile.BadZipFile as error:
                raise UploadError(f"{name} is not a readable zip archive ({error}).") from error
        return _dataset_root(unpacked, name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe_name
    if not path.exists():
        partial = folder / f".{safe_name}.part"
        partial.write_bytes(data)
        os.replace(partial, path)
    return path


def _dataset_root(folder: Path, name: str) -> Path:
    for marker in ("X.npy", "spectra.npz"):
        hits = sorted(p.parent for p in folder.rglob(marker) if "__MACOSX" not in p.parts)
        if hits:
            return min(hits, key=lambda p: len(p.parts))
    found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())[:8]
    raise UploadError(f"{name}: the zip holds no GANDALF folder (X.npy, params.npy, ids.npy, axis_labels.npy, "
                      f"wavelength.npy) nor an astrocore dataset (spectra.npz); it contains {found or 'nothing'}.")


ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"


def example_files() -> list[Path]:
    """Small example spectra shipped in assets/ (made by the project's own simulator)."""
    return sorted(p for p in ASSETS_DIR.glob("example_*") if p.is_file()) if ASSETS_DIR.exists() else []


def local_spectra_source(path: str) -> dict:
    """The source dict of spectra at a local path, checked for existence and type (read later)."""
    location = Path(str(path).strip()).expanduser()
    if not location.exists():
        raise UploadError(f"{path}: no such file or folder on this machine.")
    if location.is_file():
        validate_upload(location.name, location.stat().st_size, SPECTRA_EXTENSIONS, max_mb=float("inf"))
    return file_source(location)


def load_uploaded_spectra(name: str, data: bytes, max_mb: float = MAX_UPLOAD_MB) -> tuple[Dataset, dict]:
    """Validate, store and read uploaded spectra; every problem becomes an :class:`UploadError`."""
    from .data import load_source

    path = store_upload(name, data, SPECTRA_EXTENSIONS, max_mb)
    try:
        dataset, source = load_source(str(path))
    except UploadError:
        raise
    except DataError as error:
        raise UploadError(_strip_paths(str(error), path, name)) from error
    except Exception as error:  # an unexpected reader failure still reads as a message, not a traceback
        raise UploadError(f"{name} could not be read: {type(error).__name__}: {error}") from error
    return dataset, source


def store_payne_upload(name: str, data: bytes, max_mb: float = MAX_UPLOAD_MB) -> Path:
    """Validate and store an uploaded Payne emulator; checks that it loads."""
    path = store_upload(name, data, PAYNE_EXTENSIONS, max_mb)
    check_payne(path, name)
    return path


def check_payne(path, name: str | None = None) -> None:
    from .data.payne import PayneEmulator

    path = Path(path)
    name = name or path.name
    if not path.exists():
        raise UploadError(f"{name}: no such file.")
    try:
        PayneEmulator.load(path)
    except DataError as error:
        raise UploadError(_strip_paths(str(error), path, name)) from error
    except Exception as error:
        raise UploadError(f"{name} is not a Payne emulator .npz: {type(error).__name__}: {error}") from error


def _strip_paths(message: str, path: Path, name: str) -> str:
    """Replace the cache path of an upload by the name the user gave it."""
    for candidate in (str(path.resolve()), str(path)):
        message = message.replace(candidate, name)
    return message


def compatibility_error(dataset: Dataset, run) -> str | None:
    """Why ``dataset`` cannot go through ``run`` (wavelength grid, missing labels), or None."""
    from .data.readers import check_compatible

    try:
        check_compatible(dataset, run.wavelength)
    except DataError as error:
        return str(error)
    missing = [name for name in run.conditional if name not in dataset.labels.colnames]
    if missing:
        return (f"the spectra have no {', '.join(missing)} label(s); the model encodes a star at its "
                f"{', '.join(run.conditional)}, so these labels are needed.")
    return None


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
    from .models.disentangler import DisentanglerConfig

    extra = dict(overrides or {})
    if lambdas is not None:
        extra["lambdas"] = tuple(lambdas)
    if epochs:
        extra["epochs"] = int(epochs)
    return DisentanglerConfig.preset(preset, mode=mode, conditional=tuple(conditional), **extra)


def cli_command_text(command: list[str]) -> str:
    """A training command as the user would type it (``astrocore ...``)."""
    parts = list(command)
    if len(parts) > 2 and parts[1:3] == ["-m", "astrocore"]:
        parts = ["astrocore", *parts[3:]]
    return " ".join(f"'{p}'" if (" " in p or "[" in p) else p for p in parts)


# ============================================================================ progress and losses
def loss_curves(rows: list[dict], config: dict | None = None) -> tuple[dict, dict]:
    """Curves for :func:`astrocore.plots.loss_figure` from ``history.jsonl`` rows.

    Returns (curves, chance). Curves: per-batch training losses ("train recon", "adversary <cp>")
    against fractional epoch and per-epoch validation losses ("val recon", "val adversary <cp>").
    Chance: the loss of a constant guess for each adversary (1 for the regression adversaries on
    standardised parameters, about ln(n_bins) for classifier adversaries); an adversary near
    chance finds no trace of its parameter in the latent.
    """
    config = config or {}
    steps_per_epoch = None
    for row in rows:
        metrics = row.get("metrics", {})
        if "train_recon" in metrics and row.get("step"):
            steps_per_epoch = row["step"] / (float(metrics.get("epoch", 0)) + 1.0)
            break
    if steps_per_epoch is None and config.get("epochs") and rows and rows[-1].get("total"):
        steps_per_epoch = rows[-1]["total"] / float(config["epochs"] + config.get("decoder_refit_epochs", 0))
    curves: dict[str, tuple[list, list]] = {}

    def add(name, x, y):
        if y is None or not np.isfinite(y):
            return
        xs, ys = curves.setdefault(name, ([], []))
        xs.append(float(x))
        ys.append(float(y))

    for row in rows:
        metrics = row.get("metrics", {})
        if "train_recon" in metrics or "val_recon" in metrics:
            x = float(metrics.get("epoch", 0)) + 1.0
            add("val recon", x, metrics.get("val_recon"))
            for key, value in metrics.items():
                if key.startswith("val_adv_"):
                    add(f"val adversary {key[len('val_adv_'):]}", x, value)
            continue
        step = float(row.get("step", 0))
        x = step / steps_per_epoch if steps_per_epoch else step
        add("train recon", x, metrics.get("recon"))
        for key, value in metrics.items():
            if key.startswith("adv_"):
                add(f"adversary {key[len('adv_'):]}", x, value)
    result = {name: (np.asarray(xs), np.asarray(ys)) for name, (xs, ys) in curves.items()}
    chance = {}
    if config.get("mode") in ("at", "mdat"):
        names = list(config.get("conditional", [])) if config.get("mode") == "mdat" else ["joint"]
        if config.get("adversary") == "regression":
            level = 1.0
        else:
            bins = int(config.get("n_bins", 10))
            level = float(np.log(bins ** (len(config.get("conditional", [])) if config.get("mode") == "at" else 1)))
        chance = {("all" if len(names) > 1 else names[0]): level}
    return result, chance


def job_loss_curves(folder) -> tuple[dict, dict]:
    """Loss curves of a run folder that may still be training (progress log + config if written)."""
    config = {}
    if (Path(folder) / "run.json").exists():
        try:
            config = RunRecord.read(folder).config
        except (json.JSONDecodeError, OSError, TypeError):  # half-written: curves without config
            config = {}
    return loss_curves(read_history(folder), config)


def run_loss_curves(record: RunRecord) -> tuple[dict, dict]:
    """Loss curves of a run: from its progress log, else from the per-epoch history in run.json."""
    rows = read_history(record.path)
    if rows:
        curves, chance = loss_curves(rows, record.config)
        if curves:
            return curves, chance
    curves = {}
    epochs = record.history.get("epochs", []) if record.history else []
    for key in ("train_recon", "val_recon"):
        xs = [e["epoch"] + 1 for e in epochs if key in e]
        if xs:
            curves[key.replace("_", " ")] = (np.asarray(xs, float), np.asarray([e[key] for e in epochs if key in e]))
    return curves, {}


def progress_text(status: dict, epochs: int | None = None) -> str:
    """'epoch 3/12 · recon 0.0123 · 45 s' for a progress bar."""
    metrics = status.get("metrics", {})
    parts = []
    if status["state"] == "starting":
        return f"preparing the data and the model · {status['elapsed']:.0f} s"
    if "epoch" in metrics and metrics.get("phase"):  # after training, e.g. the decoder refit
        parts.append(f"{metrics['phase']} · epoch {int(metrics['epoch']) + 1}")
    elif "epoch" in metrics:
        parts.append(f"epoch {int(metrics['epoch']) + 1}/{epochs or '?'}")
    for key in ("recon", "val_recon", "train_recon"):
        if key in metrics:
            parts.append(f"{key.replace('_', ' ')} {metrics[key]:.4g}")
            break
    parts.append(f"{status['elapsed']:.0f} s")
    if status.get("fraction") and 0 < status["fraction"] < 1 and status["elapsed"] > 3:
        remaining = status["elapsed"] * (1 - status["fraction"]) / status["fraction"]
        parts.append(f"~{remaining:.0f} s left")
    return " · ".join(parts)


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
    rows = {LABEL_TITLES.get(label, label): {name: values[label].get(mode) for mode, name in
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
    index = [f"{LABEL_TITLES.get(n, n)}{' (conditioned)' if n in conditional else ''}" for n in labels]
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


def twins_table(evaluated: list[tuple[RunRecord, dict]]) -> pd.DataFrame:
    """Chemical-twins score (top-10 neighbours sharing the fingerprint at other Teff/logg) of X and
    of each run's latent."""
    rows = []
    x_twins = next(((ev.get("X") or {}).get("twins_top10") for _, ev in evaluated
                    if (ev.get("X") or {}).get("twins_top10") is not None), None)
    if x_twins is not None:
        rows.append({"representation": "X (input spectra)", "twins top-10": x_twins})
    for record, evaluation in evaluated:
        if evaluation.get("twins_top10") is not None:
            rows.append({"representation": f"z {MODE_TITLES.get(record.config.get('mode'), '?')} ({record.id})",
                         "twins top-10": evaluation["twins_top10"]})
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
                row[key] = evaluation[key]
        rows.append(row)
    return pd.DataFrame(rows)


# ============================================================================ runs page
def runs_table(records: list[RunRecord], evaluations: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per run: id, method, status, data, mode, conditional, created and key metrics."""
    evaluations = evaluations or {}
    rows = []
    for record in records:
        config, metrics = record.config, record.metrics
        evaluation = evaluations.get(record.id) or {}
        rows.append({
            "id": record.id,
            "method": record.method,
            "status": record.status,
            "data": source_label(record.data),
            "mode": MODE_TITLES.get(config.get("mode", ""), config.get("mode", "")),
            "conditional": ", ".join(config.get("conditional", [])),
            "preset/epochs": f"{config.get('epochs', '?')} ep, latent {config.get('latent_dim', '?')}",
            "created": record.created.replace("T", " ").replace("+00:00", " UTC"),
            "train s": round(metrics["train_seconds"], 1) if "train_seconds" in metrics else None,
            "recon MSE (test)": metrics.get("recon_mse_test"),
            "R² teff (z)": (evaluation.get("r2") or {}).get("teff"),
            "R² logg (z)": (evaluation.get("r2") or {}).get("logg"),
            "twins": evaluation.get("twins_top10"),
        })
    return pd.DataFrame(rows)


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else value


def config_diff(records: list[RunRecord], only_differences: bool = True) -> pd.DataFrame:
    """Config and data settings side by side (rows: settings, columns: run ids)."""
    flat = {}
    for record in records:
        values: dict = {}
        _flatten("", record.config, values)
        _flatten("data", record.data, values)
        flat[record.id] = values
    keys = sorted({k for values in flat.values() for k in values})
    table = pd.DataFrame({run: [values.get(k) for k in keys] for run, values in flat.items()}, index=keys)
    if only_differences and len(records) > 1:
        differs = table.astype(str).nunique(axis=1) > 1
        table = table[differs]
    return table.astype(str)


def metrics_table(records: list[RunRecord], evaluations: dict[str, dict] | None = None) -> pd.DataFrame:
    """Metrics side by side (rows: metric, columns: run ids), from run.json and evaluation.json."""
    evaluations = evaluations or {}
    data = {}
    for record in records:
        values = {k: v for k, v in record.metrics.items() if isinstance(v, (int, float))}
        evaluation = evaluations.get(record.id) or {}
        for probe in ("r2", "r2_knn"):
            for label, value in (evaluation.get(probe) or {}).items():
                values[f"{probe} z {label}"] = value
        for key in ("twins_top10", "recon_rms", "gen_rmse", "gen_rmse_extrap", "decode_ms"):
            if key in evaluation:
                values[key] = evaluation[key]
        data[record.id] = values
    return pd.DataFrame(data)


def compare_curves(records: list[RunRecord], metric: str = "val_recon") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    series = {}
    for record in records:
        epochs = (record.history or {}).get("epochs", [])
        points = [(e["epoch"] + 1, e[metric]) for e in epochs if metric in e]
        if not points:
            rows = [r["metrics"] for r in read_history(record.path) if metric in r.get("metrics", {})]
            points = [(m.get("epoch", i) + 1, m[metric]) for i, m in enumerate(rows)]
        if points:
            x, y = zip(*points)
            series[record.id] = (np.asarray(x, float), np.asarray(y, float))
    return series


def runs_listing_text(folder=None) -> str:
    """Exactly what ``astrocore runs list`` prints for this runs folder."""
    from .cli import main as cli_main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        cli_main(["runs", "list", "--dir", str(runs_dir(folder))])
    return buffer.getvalue()


def zip_bytes(record: RunRecord) -> bytes:
    from .runs import zip_run

    return zip_run(record.path)
