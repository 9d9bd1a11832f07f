"""The run registry on disk.

A run lives in ``runs/<id>/``::

    run.json              id, method, status, created, config, data, metrics (written last)
    weights.safetensors   model weights and normalisation buffers
    arrays.npz            per-object arrays (ids, labels, latents, predictions); loaded without pickle
    progress.json         latest (step, total, metrics) while training; read by the app
    history.jsonl         one JSON line per progress report
    checkpoint.*          resumable training state (one safetensors file: tensors + loop state)
    train.log             stdout/stderr of a background training process (the app)
    .lock                 held (``flock``) by the process training the run; the OS releases it when
                          that process dies, so a "running" run whose lock is free was interrupted

A run is finished when ``run.json`` says ``"status": "done"``; every file is replaced atomically,
so a reader never sees half a file and a crash never leaves a "done" run without its weights.

Run ids are plain names (:data:`RUN_ID_PATTERN`); a new run claims its folder atomically
(:func:`claim_run_folder`) and holds its lock while it trains, so two writers never share a run.
Deleting renames the folder to a hidden ``.deleting-<id>-<token>`` first, so a crash in the middle
of a delete leaves no half run behind (:func:`list_runs` finishes such deletes).
"""
from __future__ import annotations

import io
import json
import os
import re
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
from torch import distributed as torch_distributed

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks, claims still atomic
    fcntl = None

from .training import TrainingCancelled, atomic_write_text

DEFAULT_RUNS_DIR = Path(os.environ.get("ASTROCORE_RUNS", "runs"))
#: What a run id may be: a plain folder name (no ``/``, no leading dot, no ``..``), at most 100 characters.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
LOCK_FILE = ".lock"
DELETING_PREFIX = ".deleting-"
#: Names of the temporary files an atomic write leaves behind when it is killed (``.run.json.x1y2``).
TEMPORARY_PREFIXES = (".checkpoint.safetensors.", ".checkpoint.json.", ".run.json.", ".arrays.",
                      ".weights.safetensors.", ".progress.json.", ".epochs.safetensors.")
MAX_RUN_JSON_BYTES = 64 * 2**20
STATUSES = ("running", "done", "failed", "cancelled")


class RunError(ValueError):
    """A run id, run folder or run file that cannot be used; the message names the problem."""


def runs_dir(path=None) -> Path:
    """The runs folder: ``path``, else $ASTROCORE_RUNS, else ./runs."""
    folder = Path(path) if path is not None else Path(os.environ.get("ASTROCORE_RUNS", "runs"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def new_run_id(method: str, tag: str = "") -> str:
    """``<method>-<tag>-<UTC time>-<12 random hex digits>``; :func:`new_run_folder` makes it unique."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    parts = [method, tag, stamp, secrets.token_hex(6)]
    return "-".join(part for part in parts if part)


def check_run_id(run_id) -> str:
    """``run_id`` when it is a valid run name, else :class:`RunError` (no paths, no ``..``)."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id) or ".." in run_id:
        raise RunError(f"Invalid run id {str(run_id)[:120]!r}: a run id is 1-100 letters, digits, '.', '_' or '-', "
                       "starting with a letter or digit (no '/', no '..').")
    return run_id


def new_run_folder(runs_root, method: str, tag: str = "") -> Path:
    """Create the folder of a new run under a fresh id, atomically (``mkdir`` fails on an existing
    name, and then another id is drawn): two processes never get the same folder."""
    root = runs_dir(runs_root)
    for _ in range(100):
        folder = root / new_run_id(method, tag)
        try:
            os.mkdir(folder)
        except FileExistsError:
            continue
        return folder
    raise RunError(f"Could not create a new run folder in {root} (100 ids taken).")


# Locks this process holds: resolved run folder -> file descriptor of its .lock.
_HELD_LOCKS: dict[str, int] = {}


def _lock_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    except OSError:
        return "?"


def lock_run(folder, wait: float = 2.0) -> None:
    """Take the run's writer lock (``flock`` on ``.lock``, with this pid in it) or raise
    :class:`RunError` when another live process holds it. Released by :func:`unlock_run`, by
    writing a final status (:meth:`RunRecord.write`) or by the OS when the process ends."""
    folder = Path(folder)
    key = str(folder.resolve())
    if key in _HELD_LOCKS:
        raise RunError(f"Run {folder.name} is already being trained by this process.")
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    if fcntl is not None:
        deadline = time.monotonic() + wait  # a reader probing the lock holds it for microseconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pid = _lock_pid(fd)
                    os.close(fd)
                    raise RunError(f"Run {folder.name} is being trained by another process (pid {pid}); "
                                   "wait for it to finish or cancel it, or choose another run id.") from None
                time.sleep(0.05)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD_LOCKS[key] = fd


def unlock_run(folder) -> None:
    """Release the writer lock of ``folder`` if this process holds it."""
    fd = _HELD_LOCKS.pop(str(Path(folder).resolve()), None)
    if fd is not None:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_being_trained(folder) -> bool:
    """True when a live process (this one or another) holds the run's writer lock."""
    folder = Path(folder)
    if str(folder.resolve()) in _HELD_LOCKS:
        return True
    if fcntl is None:
        return False
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def clean_temporary_files(folder) -> list[Path]:
    """Remove what killed atomic writes left in a run folder (and its sub-folders): the
    ``.checkpoint.safetensors.XXXX``, ``.run.json.XXXX``, ``.arrays.*`` files. Call it only when no
    process is training the run. Returns the removed files."""
    removed = []
    for directory, _, files in os.walk(folder):  # does not follow symbolic links
        for name in files:
            if name.startswith(TEMPORARY_PREFIXES):
                path = Path(directory) / name
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:
                    pass
    return removed


def claim_run_folder(runs_root, run_id: str | None, method: str, tag: str = "", resume: bool = False) -> Path:
    """The folder a training writes, claimed for this process.

    Without ``run_id`` a fresh folder is created atomically (:func:`new_run_folder`); a given
    ``run_id`` is validated (:func:`check_run_id`) and its folder created if needed (a background
    job makes it first). Either way this process then holds the run's writer lock until it writes a
    final status, so a second writer to the same run (or a ``resume`` of a run another process is
    training) is refused with :class:`RunError`. Leftover temporary files of a killed attempt are
    removed.
    """
    if _distributed():  # under torchrun rank 0 claims; the other ranks get its answer
        if torch_distributed.get_rank() != 0:
            answer = _broadcast(None)
            if answer.get("error"):
                raise RunError(answer["error"])
            return runs_dir(runs_root) / check_run_id(answer["name"])
        try:
            folder = _claim(runs_root, run_id, method, tag, resume)
        except RunError as error:
            _broadcast({"error": str(error)})
            raise
        _broadcast({"name": folder.name})
        return folder
    return _claim(runs_root, run_id, method, tag, resume)


def _distributed() -> bool:
    return (torch_distributed.is_available() and torch_distributed.is_initialized()
            and torch_distributed.get_world_size() > 1)


def _broadcast(value):
    box = [value]
    torch_distributed.broadcast_object_list(box, src=0)
    return box[0]


def _claim(runs_root, run_id: str | None, method: str, tag: str, resume: bool) -> Path:
    if run_id is None:
        if resume:
            raise RunError("Resuming needs the id of the run to continue.")
        folder = new_run_folder(runs_root, method, tag)
    else:
        folder = runs_dir(runs_root) / check_run_id(run_id)
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise RunError(f"{folder} exists and is not a run folder.")
        folder.mkdir(exist_ok=True)
    lock_run(folder)
    clean_temporary_files(folder)
    if not resume:  # a fresh start in an old folder: the old progress is not this run's
        for name in ("history.jsonl", "progress.json"):
            (folder / name).unlink(missing_ok=True)
    return folder


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
        """Replace ``run.json``; a final status (done, failed, cancelled) also releases the run's
        writer lock when this process holds it."""
        atomic_write_text(self.path / "run.json", json.dumps(self.to_json(), indent=2, default=_json_default))
        if self.status != "running":
            unlock_run(self.path)

    @classmethod
    def read(cls, path) -> "RunRecord":
        """The record in ``path/run.json``; :class:`RunError` names what is wrong with a broken one
        (FileNotFoundError when there is no run.json)."""
        path = Path(path)
        meta_file = path / "run.json"
        if not meta_file.exists():
            raise FileNotFoundError(f"{path} is not a run folder (no run.json).")
        try:
            if meta_file.stat().st_size > MAX_RUN_JSON_BYTES:
                raise RunError(f"{meta_file} is {meta_file.stat().st_size:,} bytes; a run.json is at most "
                               f"{MAX_RUN_JSON_BYTES:,}.")
            meta = json.loads(meta_file.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise RunError(f"{meta_file} is not valid JSON ({type(error).__name__}: {str(error)[:200]}).") from None
        if not isinstance(meta, dict):
            raise RunError(f"{meta_file} holds a {type(meta).__name__}, not a JSON object.")
        values = {}
        for key, kind in (("id", str), ("method", str), ("status", str), ("created", str), ("config", dict),
                          ("data", dict), ("metrics", dict), ("history", dict), ("message", str)):
            if key in meta:
                if not isinstance(meta[key], kind):
                    raise RunError(f"{meta_file}: {key!r} should be a {kind.__name__}; got {type(meta[key]).__name__}.")
                values[key] = meta[key]
        missing = [key for key in ("id", "method") if key not in values]
        if missing:
            raise RunError(f"{meta_file} has no {' or '.join(missing)}.")
        return cls(path=path, **values)

    @property
    def shown_status(self) -> str:
        """The status to show: "interrupted" for a run that says running but whose training
        process is gone (nobody holds its lock), else the status in run.json."""
        if self.status == "running" and not is_being_trained(self.path):
            return "interrupted"
        return self.status


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


_RUN_LIKE_FILES = ("train.log", "jobs", "checkpoint.safetensors", "weights.safetensors", "arrays.npz")


def _broken_record(path: Path, reason: str) -> RunRecord:
    try:
        created = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    except OSError:
        created = ""
    return RunRecord(id=path.name, path=path, method="?", status="broken", created=created, message=reason)


def list_runs(folder=None, clean: bool = True) -> list[RunRecord]:
    """All runs (any status), newest first.

    A run whose training process died shows as "interrupted" (not "running"); a folder whose
    ``run.json`` cannot be read is listed as "broken" with the reason in ``message`` instead of
    failing the whole listing. With ``clean``, interrupted runs lose their leftover temporary files
    and the remains of interrupted deletes (``.deleting-*``) are removed.
    """
    root = runs_dir(folder)
    records = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(DELETING_PREFIX):
            if clean and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            continue
        if path.name.startswith(".") or path.is_symlink() or not path.is_dir():
            continue
        if not (path / "run.json").exists():
            if any((path / name).exists() for name in _RUN_LIKE_FILES):
                records.append(_broken_record(path, "no run.json (its training never started or the folder was "
                                                    "tampered with)"))
            continue
        try:
            record = RunRecord.read(path)
        except (RunError, OSError) as error:
            records.append(_broken_record(path, str(error)))
            continue
        if record.status == "running" and record.shown_status == "interrupted":
            record.status = "interrupted"
            record.message = (record.message or "its training process ended before it finished") + \
                f"; continue it with: astrocore train --resume {path}"
            if clean:
                clean_temporary_files(path)
        records.append(record)
    return sorted(records, key=lambda record: record.created, reverse=True)


def checked_run_folder(path, runs_root=None) -> Path:
    """``path`` resolved, once it is known to be a run folder directly inside the runs folder
    (``runs_root``; by default the folder that holds it): not a symbolic link, no ``..``, a valid
    run id, with a ``run.json`` file. Raises :class:`RunError` (FileNotFoundError without run.json)."""
    path = Path(path)
    if ".." in path.parts:
        raise RunError(f"{path} contains '..'; give the run folder itself.")
    if path.is_symlink():
        raise RunError(f"{path} is a symbolic link, not a run folder.")
    resolved = path.resolve()
    if runs_root is not None and resolved.parent != Path(runs_root).resolve():
        raise RunError(f"{path} is not inside the runs folder {runs_root}.")
    check_run_id(resolved.name)
    meta = resolved / "run.json"
    if not meta.exists():
        raise FileNotFoundError(f"{path} is not a run folder (no run.json); refusing.")
    if meta.is_symlink() or not meta.is_file():
        raise RunError(f"{meta} is not a regular file; refusing.")
    return resolved


def delete_run(path, runs_root=None) -> None:
    """Delete a run folder (see :func:`checked_run_folder`). The folder is first renamed to a hidden
    ``.deleting-<id>-<token>`` (one atomic step), so a crash during the removal leaves no half run
    in the listing; :func:`list_runs` removes what is left."""
    folder = checked_run_folder(path, runs_root)
    if is_being_trained(folder):
        raise RunError(f"Run {folder.name} is being trained; cancel it before deleting it.")
    doomed = folder.parent / f"{DELETING_PREFIX}{folder.name}-{secrets.token_hex(4)}"
    os.rename(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def zip_run(path, runs_root=None) -> bytes:
    """The run folder as zip bytes (weights, config, metrics, arrays), without checkpoints, hidden
    files or symbolic links (see :func:`checked_run_folder`)."""
    path = checked_run_folder(path, runs_root)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.iterdir()):
            if file.is_file() and not file.is_symlink() and not file.name.startswith(("checkpoint", ".")):
                archive.write(file, arcname=f"{path.name}/{file.name}")
    return buffer.getvalue()


def listing_lines(records: list[RunRecord], folder=None) -> list[str]:
    """One line per run (id, method, mode, data, status, created, reconstruction error): what
    ``astrocore runs list`` prints and the Runs page shows."""
    if not records:
        return [f"no runs in {folder or 'runs'}/"]
    lines = []
    for record in records:
        data = str(record.data.get("generator") or Path(str(record.data.get("path", "?"))).name)
        mode = str(record.config.get("mode", ""))
        recon = record.metrics.get("recon_mse_test")
        recon_text = f"recon_mse={recon:.3g}" if isinstance(recon, (int, float)) else ""
        line = (f"{record.id:<44} {record.method:<11} {mode:<5} {data:<8} {record.status:<11} {record.created}  "
                f"{recon_text}".rstrip())
        if record.status in ("broken", "interrupted"):
            line += f"  ({record.message})"
        lines.append(line)
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
