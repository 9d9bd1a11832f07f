"""Logic every page shares: the app's environment, run choice and labels, data sources,
object descriptions, and training progress and loss curves. Plain Python (no Streamlit)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from astropy.table import Table

from ..data import SIMULATORS, dataset_from_source, renderer_for, source_for
from ..data.names import label_title
from ..data.simulators.apogee import DEFAULT_LOGG_GRID, DEFAULT_TEFF_GRID
from ..data.dataset import DataError, Dataset
from ..methods import registry
from ..methods.registry import load_run as load
from ..methods.shipping import SHIPPED_DIR, join_weights  # the app copies these runs into the runs folder
from ..runs import RunRecord, list_runs, read_history, runs_dir
from ..training import device_description as describe

APOGEE_GRID_POINTS = len(DEFAULT_TEFF_GRID) * len(DEFAULT_LOGG_GRID)  # 210 Teff, log g points per chemistry
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


def install_shipped_runs(folder=None) -> list[str]:
    """Copy each shipped run that the runs folder lacks into it (unless $ASTROCORE_SHIPPED_RUNS is
    0); returns the ids copied. A shipped run deleted from the runs folder comes back next time."""
    if os.environ.get("ASTROCORE_SHIPPED_RUNS", "1") == "0" or not SHIPPED_DIR.is_dir():
        return []
    root = runs_dir(folder)
    copied = []
    for shipped in sorted(SHIPPED_DIR.iterdir()):
        target = root / shipped.name
        if not (shipped / "run.json").exists() or target.exists():
            continue
        partial = root / f".{shipped.name}.installing"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(shipped, partial)
        join_weights(partial)  # weights shipped in parts (the repository keeps files under 5 MiB)
        os.replace(partial, target)  # whole or not at all: a reader never sees half a run
        copied.append(shipped.name)
    return copied


def device_description() -> str:
    return describe()


# ============================================================================ runs
def finished_runs(folder=None, method: str | None = "disentangle") -> list[RunRecord]:
    """Finished runs of ``method`` (None: of every registered method), newest first."""
    known = registry.methods()
    return [r for r in list_runs(folder) if r.status == "done" and r.method in known
            and (method is None or r.method == method)]


def choose_default_run(records: list[RunRecord]) -> RunRecord | None:
    """The run the Spectra page opens with: the newest finished ``default-*`` run, else the newest
    finished disentangling run, else None."""
    done = [r for r in records if r.status == "done" and r.method == "disentangle"]
    defaults = [r for r in done if r.id.startswith(DEFAULT_RUN_PREFIX)]
    pool = defaults or done
    return max(pool, key=lambda r: r.created) if pool else None


def source_label(source: dict, short: bool = False) -> str:
    """A human description of a data source dict; ``short``: without grid size and seed."""
    if not source:
        return "unknown data"
    if source.get("kind") == "simulator":
        params = source.get("params", {})
        generator = source.get("generator")
        seed = "" if short else f", seed {params.get('seed', 0)}"
        if generator == "apogee":
            grid = "" if short else f" × {APOGEE_GRID_POINTS} Teff, log g"
            return f"APOGEE-like, {params.get('n_fingerprints', '?')} chemistries{grid}{seed}"
        if generator == "rvs":
            return f"RVS-like, {params.get('n_stars', '?')} stars{seed}"
        if generator == "payne":
            count = f", {params['n_fingerprints']} fingerprints" if params.get("n_fingerprints") else ""
            return f"Payne emulator {Path(str(params.get('path', '?'))).name}{count}{seed}"
        return str(generator)
    if source.get("kind") == "file":
        return f"file {Path(source.get('path', '?')).name}"
    return str(source.get("kind", "data"))


def run_label(record: RunRecord) -> str:
    """A run as select boxes list it: id, mode and data, short enough to be read whole (the
    conditioning, grid and seed are in the caption beside the box)."""
    mode = MODE_TITLES.get(record.config.get("mode", ""), record.config.get("mode", ""))
    return f"{record.id} · {mode} · {source_label(record.data, short=True)}"


def run_stamp(record: RunRecord) -> float:
    """Changes when a run is rewritten (cache key next to the run id)."""
    try:
        return (Path(record.path) / "run.json").stat().st_mtime
    except OSError:
        return 0.0


def load_run(path):
    """Load a finished run for interactive use (see :func:`use_one_inference_thread`)."""
    use_one_inference_thread()
    return load(path)


def use_one_inference_thread() -> None:
    """Decode with one torch thread in the app's process.

    Decoding one spectrum is a fraction of a millisecond of work; with several intra-op threads on
    a busy 2-core machine the threads wait for each other and the same call takes tens of
    milliseconds (measured: 36 ms -> 0.5 ms). Training runs in its own processes, unaffected.
    The setting is per OS thread (OpenMP), so it is applied again on every decode.
    """
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


# ============================================================================ data
def source_to_json(source: dict) -> str:
    return json.dumps(source, sort_keys=True, default=str)


def dataset_from_json(source_json: str) -> Dataset:
    return dataset_from_source(json.loads(source_json))


def renderer_from_json(source_json: str):
    """The simulator's noiseless renderer for this source, or None (real data / no emulator)."""
    try:
        return renderer_for(json.loads(source_json))
    except (ImportError, DataError, OSError, ValueError):
        return None


def simulator_source(generator: str, n_stars: int, seed: int = 0) -> dict:
    """The source dict ``load_source`` would build for a built-in simulator (without building)."""
    if generator not in SIMULATORS:
        raise ValueError(f"unknown simulator {generator!r}; choose 'apogee' or 'rvs'.")
    return source_for(generator, n_stars, seed)


def payne_source(path, n_fingerprints: int = 60, seed: int = 0) -> dict:
    """As ``load_source("payne:PATH", n_stars=n_fingerprints, seed=seed)`` builds it: chemistries of
    the emulator, each rendered on the giant Teff x log g grid."""
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
        rows.append({"label": label_title(name), "min": low, "max": high, "unit": unit,
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
