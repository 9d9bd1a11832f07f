"""Background work for the app: training, evaluation and embeddings as detached processes.

Every job is an ordinary command (``python -m astrocore train disentangle ...`` - the same
command the CLI documents: ``astrocore evaluate|embed RUN --out ...``) started with
``sys.executable`` in its own session, writing into the run folder. All state lives on disk, so a
browser reload, a second browser tab or a restarted Streamlit server sees the same jobs::

    runs/<id>/jobs/<name>.json   the job record: command, pid, start time, log, output, cancel time
    runs/<id>/train.log          stdout + stderr of the training process (evaluate.log, embed-*.log)
    runs/<id>/progress.json      written by the training loop; read by :func:`job_status`
    runs/<id>/CANCEL             asks the training loop to stop after the current batch
    runs/<id>/evaluation.json    output of the evaluation job
    runs/<id>/embeddings/<representation>-<method>.npz   output of an embedding job

:func:`job_status` is cheap (a few small file reads) so a page can poll it every second. A cancel
writes ``CANCEL`` first and terminates the process group only when it is still alive after a grace
period. Only processes whose command line names the run are ever signalled.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .runs import (RunError, RunRecord, check_run_id, is_being_trained, new_run_folder, read_json, read_progress,
                   runs_dir)
from .training import atomic_write_text

#: Seconds between writing CANCEL and terminating a training process that has not stopped.
CANCEL_GRACE_SECONDS = 10.0
#: Seconds between SIGTERM and SIGKILL.
KILL_GRACE_SECONDS = 5.0
TERMINAL_STATES = ("done", "failed", "cancelled", "interrupted")

# Popen objects of the children this process started, so that finished ones are reaped (a zombie
# would otherwise look alive to os.kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen] = {}


class JobError(RuntimeError):
    """A job could not be started (e.g. one is already running for this run)."""


# ============================================================================ records
def jobs_folder(run_folder) -> Path:
    return Path(run_folder) / "jobs"


def job_file(run_folder, name: str) -> Path:
    return jobs_folder(run_folder) / f"{name}.json"


def read_job(run_folder, name: str) -> dict | None:
    return read_json(job_file(run_folder, name))


def _write_job(run_folder, name: str, record: dict) -> None:
    atomic_write_text(job_file(run_folder, name), json.dumps(record, indent=2))


@contextlib.contextmanager
def _lock(run_folder):
    """An exclusive lock on the run's jobs folder, so two sessions never start the same job twice."""
    folder = jobs_folder(run_folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        yield


# ============================================================================ processes
def is_alive(pid: int | None, token: str | None = None) -> bool:
    """True when process ``pid`` runs and (if ``token`` is given) its command line contains it.

    The token check guards against pid reuse after a reboot or a long time.
    """
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
            return False
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                return False
            if token is not None:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                return token in command
        except (OSError, IndexError):
            return False
    return True


def _signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the job's process group (it was started in its own session)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError, OSError):
            pass


def launch(run_folder, name: str, command: list[str], log: Path, output: Path | None = None,
           kind: str = "job", extra: dict | None = None, stale: tuple[str, ...] = ()) -> dict:
    """Start ``command`` detached (own session, stdin closed, stdout+stderr to ``log``).

    Refuses when a job of the same ``name`` is still alive for this run; otherwise removes the
    ``stale`` files of a previous attempt (under the same lock, so a second browser session cannot
    delete the files of a job the first one just started). Returns the job record.
    """
    run_folder = Path(run_folder).resolve()
    run_folder.mkdir(parents=True, exist_ok=True)
    with _lock(run_folder):
        previous = read_job(run_folder, name)
        if previous is not None and is_alive(previous.get("pid"), str(run_folder.name)):
            raise JobError(f"A {name} job is already running for {run_folder.name} (pid {previous['pid']}).")
        for file_name in stale:
            (run_folder / file_name).unlink(missing_ok=True)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        threads = os.environ.get("ASTROCORE_JOB_THREADS")
        if threads:
            env.setdefault("OMP_NUM_THREADS", threads)
        log = Path(log)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as stream:
            stream.write(f"$ {' '.join(command)}\n".encode())
            stream.flush()
            process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       cwd=os.getcwd(), env=env, start_new_session=True, close_fds=True)
        _CHILDREN[process.pid] = process
        record = {
            "name": name, "kind": kind, "run_id": run_folder.name, "pid": process.pid, "command": command,
            "started": time.time(), "log": str(log), "output": str(output) if output else None,
            "cancel_requested": None, **(extra or {}),
        }
        _write_job(run_folder, name, record)
    return record


# ============================================================================ training
def training_command(run_id: str, runs_root, data: str = "apogee", n_stars: int | None = None,
                     data_seed: int = 0, mode: str = "mdat", conditional=("teff", "logg"),
                     preset: str = "fast", epochs: int | None = None, seed: int | None = None,
                     overrides: dict | None = None) -> list[str]:
    """The ``python -m astrocore train disentangle ...`` command line for these settings."""
    command = [sys.executable, "-m", "astrocore", "train", "disentangle", "--data", str(data)]
    if n_stars:
        command += ["--n-stars", str(int(n_stars))]
    command += ["--data-seed", str(int(data_seed)), "--mode", mode, "--conditional", ",".join(conditional),
                "--preset", preset]
    if epochs:
        command += ["--epochs", str(int(epochs))]
    if seed is not None:
        command += ["--seed", str(int(seed))]
    if overrides:
        command += ["--set", *[f"{key}={json.dumps(list(value) if isinstance(value, tuple) else value)}"
                               for key, value in overrides.items()]]
    command += ["--out", str(Path(runs_root).resolve()), "--run-id", run_id]
    return command


def _job_run_folder(root: Path, run_id: str | None, method: str, tag: str = "") -> Path:
    """The folder of a background training: a new one made atomically (a fresh id), or the given
    (validated) id's when no finished run and no live training process has it."""
    if run_id is None:
        return new_run_folder(root, method, tag)
    try:
        folder = root / check_run_id(run_id)
    except RunError as error:
        raise JobError(str(error)) from None
    if is_being_trained(folder):
        raise JobError(f"Run {run_id} is already being trained by another process; choose another run id.")
    if (folder / "run.json").exists():
        try:
            finished = RunRecord.read(folder).status == "done"
        except (RunError, OSError):
            finished = False
        if finished:
            raise JobError(f"Run {run_id} already exists and is finished; choose another run id.")
    return folder


def start_training(*, data: str = "apogee", n_stars: int | None = None, data_seed: int = 0, mode: str = "mdat",
                   conditional=("teff", "logg"), preset: str = "fast", epochs: int | None = None,
                   seed: int | None = None, overrides: dict | None = None, run_id: str | None = None,
                   runs_root=None, label: str = "") -> str:
    """Start training a disentangler in the background; returns the run id.

    The process is ``python -m astrocore train disentangle ... --out RUNS --run-id ID``; its
    output goes to ``runs/ID/train.log`` and its progress to ``runs/ID/progress.json``.
    """
    root = runs_dir(runs_root)
    folder = _job_run_folder(root, run_id, "disentangle", mode)
    run_id = folder.name
    command = training_command(run_id, root, data, n_stars, data_seed, mode, conditional, preset, epochs, seed,
                               overrides)
    epochs_total = epochs
    launch(folder, "train", command, folder / "train.log", kind="train",
           stale=("CANCEL", "progress.json", "history.jsonl"),
           extra={"label": label, "settings": {"data": data, "n_stars": n_stars, "data_seed": data_seed, "mode": mode,
                                                "conditional": list(conditional), "preset": preset,
                                                "epochs": epochs_total, "overrides": overrides or {}}})
    return run_id


def start_method_training(method: str, arguments: list[str], *, run_id: str | None = None, runs_root=None,
                          label: str = "", settings: dict | None = None) -> str:
    """Start ``python -m astrocore train METHOD ARGUMENTS... --out RUNS --run-id ID`` in the background
    (any registered method); returns the run id. Progress is polled with :func:`job_status`."""
    root = runs_dir(runs_root)
    folder = _job_run_folder(root, run_id, method)
    run_id = folder.name
    command = [sys.executable, "-m", "astrocore", "train", method, *map(str, arguments),
               "--out", str(root.resolve()), "--run-id", run_id]
    launch(folder, "train", command, folder / "train.log", kind="train",
           stale=("CANCEL", "progress.json", "history.jsonl"),
           extra={"label": label, "method": method, "settings": settings or {}})
    return run_id


def _log_tail(path, lines: int = 12) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    # tqdm redraws with carriage returns; keep the last state of each line.
    clean = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join(line for line in clean[-lines:] if line.strip())


def _error_from_log(text: str) -> str:
    """The most useful line of a failed job's log: an 'astrocore: error:' line or the exception."""
    for line in reversed(text.splitlines()):
        if "astrocore: error:" in line:
            return line.split("astrocore: error:", 1)[1].strip()
    for line in reversed(text.splitlines()):
        if line and not line.startswith(" ") and ("Error" in line or "Exception" in line):
            return line.strip()
    return ""


def job_status(run_folder, name: str = "train", cancel_grace: float = CANCEL_GRACE_SECONDS) -> dict:
    """The state of job ``name`` of a run, from its files. Also escalates overdue cancels.

    Returns a dict with ``state`` ("none", "starting", "running", "cancelling", "done", "failed",
    "cancelled"), ``fraction`` (0-1), ``step``, ``total``, ``metrics``, ``message``, ``log``,
    ``elapsed`` (s) and ``run_id``.
    """
    run_folder = Path(run_folder)
    record = read_job(run_folder, name)
    status = {"run_id": run_folder.name, "name": name, "state": "none", "fraction": 0.0, "step": 0, "total": 0,
              "metrics": {}, "message": "", "log": "", "elapsed": 0.0, "label": (record or {}).get("label", "")}
    run_json = run_folder / "run.json"
    run_record = None
    if run_json.exists():
        try:
            run_record = RunRecord.read(run_folder)
        except (RunError, json.JSONDecodeError, OSError, TypeError):
            run_record = None
    if record is None:
        if name == "train" and run_record is not None:  # a run trained from the command line
            status["state"] = run_record.shown_status  # "interrupted" when its process is gone
            status["message"] = run_record.message
            if run_record.status == "done":
                status["fraction"] = 1.0
        return status
    pid = record.get("pid")
    alive = is_alive(pid, run_folder.name)
    status["elapsed"] = time.time() - float(record.get("started", time.time()))
    status["pid"] = pid
    cancel_time = record.get("cancel_requested")
    if name == "train":
        progress = read_progress(run_folder)
        if progress:
            status.update(step=int(progress.get("step", 0)), total=int(progress.get("total", 0)),
                          metrics=progress.get("metrics", {}))
            if status["total"]:
                status["fraction"] = min(1.0, status["step"] / status["total"])
    if alive:
        if cancel_time is not None:
            waited = time.time() - float(cancel_time)
            if waited > cancel_grace + KILL_GRACE_SECONDS:
                _signal_group(pid, signal.SIGKILL)
            elif waited > cancel_grace:
                _signal_group(pid, signal.SIGTERM)
            status["state"] = "cancelling"
        elif name == "train" and run_record is not None and run_record.status == "done":
            status["state"] = "running"  # writing the final arrays; done in a moment
            status["fraction"] = 1.0
        else:
            status["state"] = "running" if (name != "train" or status["total"]) else "starting"
        return status
    # The process has ended: decide how.
    log_text = _log_tail(record.get("log", ""), 40)
    status["log"] = "\n".join(log_text.splitlines()[-12:])
    if name == "train":
        if run_record is not None and run_record.status in TERMINAL_STATES:
            status["state"] = run_record.status
            status["message"] = run_record.message
        elif cancel_time is not None or (run_folder / "CANCEL").exists():
            status["state"] = "cancelled"
            status["message"] = "stopped by the user"
            _finalise_run_record(run_record, "cancelled", "stopped by the user")
        else:
            status["state"] = "failed"
            status["message"] = _error_from_log(log_text) or "the training process ended without finishing"
            _finalise_run_record(run_record, "failed", status["message"])
        if status["state"] == "done":
            status["fraction"] = 1.0
        return status
    output = record.get("output")
    if output and Path(output).exists() and Path(output).stat().st_mtime >= float(record.get("started", 0)) - 1:
        status["state"], status["fraction"] = "done", 1.0
    elif cancel_time is not None:
        status["state"] = "cancelled"
    else:
        status["state"] = "failed"
        status["message"] = _error_from_log(log_text) or f"the {name} job ended without writing its output"
    return status


def _finalise_run_record(run_record: RunRecord | None, state: str, message: str) -> None:
    """A run whose process died while run.json still says 'running' gets its real status."""
    if run_record is not None and run_record.status == "running":
        run_record.status, run_record.message = state, message
        run_record.write()


def cancel(run_folder, name: str = "train", wait: bool = False, grace: float = CANCEL_GRACE_SECONDS) -> dict:
    """Ask a job to stop: write CANCEL (training stops after the current batch and saves its
    state), and record the time so :func:`job_status` terminates it after ``grace`` seconds.
    Other jobs are terminated at once. With ``wait`` block until the process has ended."""
    run_folder = Path(run_folder)
    record = read_job(run_folder, name)
    if record is None:
        raise JobError(f"No {name} job for {run_folder.name}.")
    if name == "train":
        (run_folder / "CANCEL").touch()
    if record.get("cancel_requested") is None:
        record["cancel_requested"] = time.time()
        _write_job(run_folder, name, record)
    pid = record.get("pid")
    if name != "train" and is_alive(pid, run_folder.name):
        _signal_group(pid, signal.SIGTERM)
    if wait:
        deadline = time.time() + grace + KILL_GRACE_SECONDS + 5
        while time.time() < deadline and is_alive(pid, run_folder.name):
            job_status(run_folder, name, cancel_grace=grace)
            time.sleep(0.2)
    return job_status(run_folder, name, cancel_grace=grace)


def wait(run_folder, name: str = "train", timeout: float = 600.0, poll: float = 0.5) -> dict:
    """Block until the job reaches a terminal state (or ``timeout``); returns its status."""
    deadline = time.time() + timeout
    status = job_status(run_folder, name)
    while status["state"] not in TERMINAL_STATES + ("none",) and time.time() < deadline:
        time.sleep(poll)
        status = job_status(run_folder, name)
    return status


def training_jobs(runs_root=None) -> list[dict]:
    """Status of every run folder with a training job record, newest first."""
    root = runs_dir(runs_root)
    found = []
    for folder in root.iterdir():
        if folder.is_dir() and not folder.name.startswith(".") and job_file(folder, "train").exists():
            record = read_job(folder, "train") or {}
            status = job_status(folder, "train")
            status["started"] = record.get("started", 0.0)
            status["command"] = record.get("command", [])
            status["settings"] = record.get("settings", {})
            found.append(status)
    return sorted(found, key=lambda status: status["started"], reverse=True)


def active_training_jobs(runs_root=None) -> list[dict]:
    return [status for status in training_jobs(runs_root) if status["state"] not in TERMINAL_STATES + ("none",)]


# ============================================================================ evaluation, embeddings
def evaluation_path(run_folder) -> Path:
    return Path(run_folder) / "evaluation.json"


def embedding_path(run_folder, representation: str, method: str) -> Path:
    return Path(run_folder) / "embeddings" / f"{representation}-{method}.npz"


def start_evaluation(run_folder, max_objects: int = 2000) -> dict:
    """Evaluate a finished run in the background (``astrocore evaluate RUN --json --out
    RUN/evaluation.json``, written atomically)."""
    run_folder = Path(run_folder).resolve()
    command = [sys.executable, "-m", "astrocore", "evaluate", str(run_folder), "--json", "--max-objects",
               str(max_objects), "--out", str(evaluation_path(run_folder))]
    return launch(run_folder, "evaluate", command, run_folder / "evaluate.log", evaluation_path(run_folder),
                  kind="evaluate")


def start_embedding(run_folder, representation: str = "z", method: str = "umap") -> dict:
    """Project one of the run's representations (e.g. ``z`` or ``X``) to 2-d in the background
    (``astrocore embed``, which writes its output atomically)."""
    run_folder = Path(run_folder).resolve()
    name = f"embed-{representation}-{method}"
    command = [sys.executable, "-m", "astrocore", "embed", str(run_folder), "--representation", representation,
               "--method", method, "--out", str(embedding_path(run_folder, representation, method))]
    return launch(run_folder, name, command, run_folder / f"{name}.log",
                  embedding_path(run_folder, representation, method), kind="embed")


def read_evaluation(run_folder) -> dict | None:
    return read_json(evaluation_path(run_folder))
