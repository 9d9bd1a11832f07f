"""The run registry on disk.

A run lives in ``runs/<id>/``::

    run.json              id, method, status, created, config, data, metrics (written last)
    weights.safetensors   model weights and normalisation buffers
    arrays.npz            per-object arrays (ids, labels, latents, predictions); loaded without pickle
    progress.json         latest (step, total, metrics) while training; read by the app
    history.jsonl         one JSON line per progress report
    checkpoint.*          resumable training state
    train.log             stdout/stderr of a background training process (the app)

A run is finished when ``run.json`` says ``"status": "done"``; every file is replaced atomically,
so a reader never sees half a file and a crash never leaves a "done" run without its weights.
"""
from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import tempfile
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .training import TrainingCancelled, atomic_write_text

DEFAULT_RUNS_DIR = Path(os.environ.get("ASTROCORE_RUNS", "runs"))


def runs_dir(path=None) -> Path:
    """The runs folder: ``path``, else $ASTROCORE_RUNS, else ./runs."""
    folder = Path(path) if path is not None else Path(os.environ.get("ASTROCORE_RUNS", "runs"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def new_run_id(method: str, tag: str = "") -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    parts = [method, tag, stamp, secrets.token_hex(2)]
    return "-".join(part for part in parts if part)


@dataclass
class RunRecord:
    """What ``run.json`` holds; method-specific run classes build on it."""

    id: str
    path: Path
    method: str
    status: str = "running"  # running | done | failed | cancelled
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    config: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    message: str = ""

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "method": self.method,
            "status": self.status,
            "created": self.created,
            "config": self.config,
            "data": self.data,
            "metrics": self.metrics,
            "history": self.history,
            "message": self.message,
        }

    def write(self) -> None:
        atomic_write_text(self.path / "run.json", json.dumps(self.to_json(), indent=2, default=_json_default))

    @classmethod
    def read(cls, path) -> "RunRecord":
        path = Path(path)
        meta_file = path / "run.json"
        if not meta_file.exists():
            raise FileNotFoundError(f"{path} is not a run folder (no run.json).")
        meta = json.loads(meta_file.read_text())
        return cls(path=path, **{k: meta[k] for k in ("id", "method", "status", "created", "config", "data", "metrics", "history", "message") if k in meta})


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save per-object arrays as ``arrays.npz`` atomically (numeric and unicode only: no pickle)."""
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".arrays.", suffix=".npz")
    os.close(handle)
    clean = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.dtype == object:
            value = value.astype(str)
        clean[key] = value
    np.savez(tmp_name, **clean)
    os.replace(tmp_name, path)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as arrays:
        return {key: arrays[key] for key in arrays.files}


def write_progress(folder: Path, step: int, total: int, metrics: dict) -> None:
    """Record training progress where a page (or another process) can poll it."""
    record = {"step": step, "total": total, "metrics": metrics, "time": time.time()}
    atomic_write_text(Path(folder) / "progress.json", json.dumps(record, default=_json_default))
    with open(Path(folder) / "history.jsonl", "a") as stream:
        stream.write(json.dumps(record, default=_json_default) + "\n")


def read_json(path: Path) -> dict | None:
    """A JSON file's content, or None when it is missing or unreadable (e.g. being replaced)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None


def read_progress(folder: Path) -> dict | None:
    return read_json(Path(folder) / "progress.json")


def read_history(folder: Path) -> list[dict]:
    path = Path(folder) / "history.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now
    return rows


def list_runs(folder=None) -> list[RunRecord]:
    """All runs (any status), newest first."""
    root = runs_dir(folder)
    records = []
    for path in root.iterdir():
        if path.is_dir() and (path / "run.json").exists():
            try:
                records.append(RunRecord.read(path))
            except (json.JSONDecodeError, FileNotFoundError, TypeError):
                continue
    return sorted(records, key=lambda record: record.created, reverse=True)


def delete_run(path) -> None:
    path = Path(path)
    if not (path / "run.json").exists():
        raise FileNotFoundError(f"{path} is not a run folder; refusing to delete it.")
    shutil.rmtree(path)


def zip_run(path) -> bytes:
    """The run folder as zip bytes (weights, config, metrics, arrays), without checkpoints."""


    path = Path(path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.iterdir()):
            if file.is_file() and not file.name.startswith(("checkpoint", ".")):
                archive.write(file, arcname=f"{path.name}/{file.name}")
    return buffer.getvalue()


def listing_lines(records: list[RunRecord], folder=None) -> list[str]:
    """One line per run (id, method, mode, data, status, created, reconstruction error): what
    ``astrocore runs list`` prints and the Runs page shows."""
    if not records:
        return [f"no runs in {folder or 'runs'}/"]
    lines = []
    for record in records:
        data = record.data.get("generator") or Path(record.data.get("path", "?")).name
        mode = record.config.get("mode", "")
        recon = record.metrics.get("recon_mse_test")
        recon_text = f"recon_mse={recon:.3g}" if recon is not None else ""
        lines.append(f"{record.id:<44} {record.method:<11} {mode:<5} {data:<8} {record.status:<9} {record.created}  "
                     f"{recon_text}".rstrip())
    return lines


@contextmanager
def recording_outcome(record: RunRecord):
    """Run the block that trains ``record``'s run: when it is cancelled or fails, ``run.json`` says so
    (status and message) before the error goes on, so no run is left "running" by a dead process."""
    try:
        yield record
    except TrainingCancelled as error:
        record.status, record.message = "cancelled", str(error)
        record.write()
        raise
    except Exception as error:
        record.status, record.message = "failed", f"{type(error).__name__}: {error}"
        record.write()
        raise


class SavedRun:
    """What every method's Run class shares: its record (``run.json``), id, folder and the
    per-object arrays saved with it (``arrays.npz``, loaded without pickle)."""

    record: RunRecord

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def path(self) -> Path:
        return self.record.path

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-object arrays saved with the run (at least ``ids`` and ``split``)."""
        return load_arrays(self.path / "arrays.npz")
