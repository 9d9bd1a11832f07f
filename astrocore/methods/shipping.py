"""Trained runs shipped with astrocore (``astrocore/shipped/<id>/``), so the app opens a working
model on a first visit instead of training one.

A shipped run is an ordinary run folder made small (the big weight matrices in float16, no
checkpoints or logs) plus ``sample.fits``, a few held-out objects, and ``sample_check.json``, the
run's default representation of them when it was made. :func:`check_sample` recomputes that
representation with the current code, which is what ``tests/test_shipped.py`` asserts, so a change
that silently alters a shipped model's behaviour fails CI. ``assets/make_default_models.py``
remakes every shipped run from the project's own simulators and ``fit``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.torch import load_file, save_file

from ..data.dataset import Dataset
from . import registry

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "shipped"
# Files a shipped run keeps; checkpoints, progress, history, logs and job folders are dropped.
KEPT_FILES = ("run.json", "weights.safetensors", "arrays.npz", "evaluation.json", "sample.fits",
              "sample_check.json", "sample_metrics.json")
HALF_PRECISION_MIN_ELEMENTS = 65_536


def shrink_run_folder(folder) -> None:
    """Make a finished run folder small enough to ship: matrices with more than 65,536 elements
    stored as float16 (the decoded outputs change by < 1e-3 relative), ``arrays.npz``
    compressed, everything but :data:`KEPT_FILES` removed. Vectors and buffers (wavelength axes, scalings) keep float32."""
    folder = Path(folder)
    weights = folder / "weights.safetensors"
    tensors = load_file(str(weights))
    save_file({name: (value.half() if value.is_floating_point() and value.ndim >= 2
                      and value.numel() > HALF_PRECISION_MIN_ELEMENTS else value)
               for name, value in tensors.items()}, str(weights))
    # Per-object arrays compressed (lossless; labels on a grid repeat a lot): np.load reads both.
    arrays = folder / "arrays.npz"
    if arrays.exists():
        with np.load(arrays, allow_pickle=False) as stored:
            values = {key: stored[key] for key in stored.files}
        np.savez_compressed(arrays, **values)
    for child in list(folder.iterdir()):
        if child.is_dir():
            shutil.rmtree(child)
        elif child.name not in KEPT_FILES:
            child.unlink()


def held_out_sample(run, dataset: Dataset, size: int = 24) -> Dataset:
    """``size`` held-out (test split) objects of ``run``'s data, spread evenly over them."""
    split = run.arrays()["split"]
    held_out = np.flatnonzero(split == 2)
    if len(held_out) == 0:
        raise ValueError(f"Run {run.id} has no held-out objects to ship as a sample.")
    rows = held_out[np.linspace(0, len(held_out) - 1, min(size, len(held_out))).astype(int)]
    sample = dataset.subset(rows)
    sample.provenance = {**dataset.provenance, "sample_of": run.id, "rows": rows.tolist()}
    return sample


def sample_representation(run, sample: Dataset) -> dict:
    """The run's default representation of ``sample`` (what ``sample_check.json`` stores)."""
    name = registry.get(run.record.method).default_representation
    values = np.asarray(run.representation(name, sample), dtype=np.float64)
    return {"representation": name, "values": values.round(6).tolist()}


def write_sample(run, sample: Dataset) -> None:
    """Store ``sample`` and its representation in the run folder."""
    sample.save(Path(run.path) / "sample.fits")
    (Path(run.path) / "sample_check.json").write_text(json.dumps(sample_representation(run, sample)))


def check_sample(folder) -> float:
    """Load the shipped run in ``folder`` with the current code and return the largest difference
    between its representation of the stored sample and the stored one, relative to the stored
    values' spread (0 = identical)."""
    folder = Path(folder)
    run = registry.load_run(folder)
    stored = json.loads((folder / "sample_check.json").read_text())
    sample = Dataset.load(folder / "sample.fits")
    now = np.asarray(sample_representation(run, sample)["values"])
    before = np.asarray(stored["values"])
    if now.shape != before.shape:
        raise ValueError(f"{folder.name}: representation shape {now.shape}, stored {before.shape}.")
    spread = float(np.std(before)) or 1.0
    return float(np.max(np.abs(now - before)) / spread)


def install(folder, target_root=SHIPPED_DIR) -> Path:
    """Copy a shrunk run folder into ``astrocore/shipped/`` (replacing an older one)."""
    folder = Path(folder)
    target = Path(target_root) / folder.name
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(folder, target)
    return target
