"""Kill training at random moments (SIGKILL: no cleanup runs) and check every run afterwards.

Real trainings run as subprocesses (``python -m astrocore train disentangle ...`` on a tiny grid).
Each is killed at a seeded random moment after it has claimed its run folder: a random time over
the measured duration of an uninterrupted training (during an epoch, a checkpoint, the decoder
refit, the final save), or - to be sure those short windows are hit - the moment a checkpoint's
temporary file or the final weights appear. After every kill the run must be listed as done (and
load) or as interrupted (never "running", never broken), its checkpoints must load and no
temporary file may be left; ``astrocore train --resume RUN`` then continues it (and may be killed
again): the run that finally finishes must load with its whole history.

The default run makes 3 kills on one chain of resumes; ``-m slow`` makes the 20 of issue 22.
"""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import toy_spectra
from safetensors.torch import load_file

from astrocore.methods.registry import load_run
from astrocore.runs import LOCK_FILE, TEMPORARY_PREFIXES, list_runs
from astrocore.training import read_checkpoint_state

EPOCHS, REFIT_EPOCHS = 6, 2
SETTINGS = ["--epochs", str(EPOCHS), "--set", "batch_size=16", "latent_dim=2", "twin_code_steps=20",
            f"decoder_refit_epochs={REFIT_EPOCHS}"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
MODES = ("random", "checkpoint", "final-save")  # the default run's kills, in order


def _train_command(data: Path, runs: Path, run_id: str, resume: bool) -> list[str]:
    folder = runs / run_id
    if resume and (folder / "run.json").exists():  # the generic resume: method and settings from run.json
        return [sys.executable, "-m", "astrocore", "train", "--resume", str(folder)]
    command = [sys.executable, "-m", "astrocore", "train", "disentangle", "--data", str(data), *SETTINGS,
               "--out", str(runs), "--run-id", run_id]
    return command + (["--resume"] if resume else [])


def _wait_for_claim(process: subprocess.Popen, folder: Path, timeout: float = 600.0) -> float:
    """Block until ``process`` holds the run's lock (its pid is in ``.lock``): training starts."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if (folder / LOCK_FILE).read_text().strip() == str(process.pid):
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.002)
    return time.monotonic()


def _temporary_files(folder: Path) -> list[Path]:
    found = []
    for directory, _, files in os.walk(folder):
        found += [Path(directory) / name for name in files if name.startswith(TEMPORARY_PREFIXES)]
    return found


def _watch(process, folder: Path, mode: str, delay: float, started_wall: float) -> str:
    """Wait for the moment of ``mode`` (or the process' end); returns what was hit."""
    deadline = time.monotonic() + (delay if mode == "random" else 4 * delay + 5)
    while process.poll() is None and time.monotonic() < deadline:
        if mode == "checkpoint" and any(p.name.startswith(".checkpoint.safetensors.") for p in _temporary_files(folder)):
            return "checkpoint write"
        if mode == "final-save":
            weights = folder / "weights.safetensors"
            if any(p.name.startswith(".weights.safetensors.") for p in _temporary_files(folder)) or (
                    weights.exists() and weights.stat().st_mtime >= started_wall):
                return "final save"
        time.sleep(0.0005 if mode != "random" else 0.005)
    return "random time"


def _check_after_kill(runs: Path, folder: Path) -> str:
    """The state a kill left: "done" (loads), "interrupted" (checkpoints load) or "not started"."""
    records = {record.path.name: record for record in list_runs(runs)}
    assert not [r for r in records.values() if r.status == "broken"], [r.message for r in records.values()]
    assert not _temporary_files(folder), "list_runs cleans what killed writes left"
    for checkpoint in folder.rglob("checkpoint.safetensors"):  # every checkpoint is whole and loads
        state = read_checkpoint_state(checkpoint.parent)
        assert state is not None and state["epoch"] >= 0
        assert load_file(str(checkpoint))
    if folder.name not in records:
        assert not (folder / "run.json").exists() and not list(folder.rglob("checkpoint.safetensors"))
        return "not started"
    record = records[folder.name]
    assert record.status in ("done", "interrupted"), record.status  # never "running" for a dead process
    if record.status == "done":
        assert load_run(folder).record.status == "done"
    return record.status


def _finished_correctly(folder: Path) -> None:
    run = load_run(folder)
    assert run.record.status == "done"
    assert [row["epoch"] for row in run.record.history["epochs"]] == list(range(EPOCHS + REFIT_EPOCHS))
    assert run.arrays()["latent"].shape[1] == 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The data, and the measured duration of an uninterrupted training (claim to exit)."""
    root = tmp_path_factory.mktemp("faults")
    data = toy_spectra(n_fingerprints=10).save(root / "toy")
    runs = root / "runs"
    process = subprocess.Popen(_train_command(data, runs, "reference", False), env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    claimed = _wait_for_claim(process, runs / "reference")
    assert process.wait(timeout=900) == 0
    duration = time.monotonic() - claimed
    _finished_correctly(runs / "reference")
    return data, runs, duration


def _kill_and_resume(setup, n_kills: int, seed: int) -> dict:
    data, runs, duration = setup
    rng = random.Random(seed)
    outcomes = {"kills": 0, "missed": 0, "hit": {}, "state": {}, "chains": 0}
    chain, resume = 0, False
    while True:
        run_id = f"killed-{seed}-{chain}"
        folder = runs / run_id
        killing = outcomes["kills"] < n_kills
        if killing:
            index = outcomes["kills"]
            mode = MODES[index] if n_kills <= len(MODES) else rng.choice(["random"] * 3 + ["checkpoint", "final-save"])
        started_wall = time.time()
        process = subprocess.Popen(_train_command(data, runs, run_id, resume), env=ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if not killing:  # the last resume runs to the end
            _, err = process.communicate(timeout=900)
            assert process.returncode == 0, err[-2000:]
            _finished_correctly(folder)
            outcomes["chains"] = chain + 1
            return outcomes
        claimed = _wait_for_claim(process, folder)
        hit = _watch(process, folder, mode, rng.uniform(0.0, duration), started_wall)
        process.send_signal(signal.SIGKILL) if process.poll() is None else None
        _, err = process.communicate(timeout=900)
        if process.returncode != -signal.SIGKILL:  # it finished before the kill: a new chain
            assert process.returncode == 0, err[-2000:]
            _finished_correctly(folder)
            outcomes["missed"] += 1
            # The kill came too late: the machine is faster (or less busy) than when measured. Later
            # random times are drawn over this attempt's real duration.
            duration = min(duration, time.monotonic() - claimed)
            chain, resume = chain + 1, False
            continue
        outcomes["kills"] += 1
        outcomes["hit"][hit] = outcomes["hit"].get(hit, 0) + 1
        state = _check_after_kill(runs, folder)
        outcomes["state"][state] = outcomes["state"].get(state, 0) + 1
        if state == "done":  # killed after its last write: nothing to resume
            chain, resume = chain + 1, False
        else:
            resume = True


def test_three_kills_then_resume(setup):
    started = time.perf_counter()
    outcomes = _kill_and_resume(setup, 3, seed=22)
    print(f"\n3 kills: {outcomes}; {time.perf_counter() - started:.1f} s (training alone {setup[2]:.1f} s)")
    assert outcomes["kills"] == 3


@pytest.mark.slow
def test_twenty_kills_then_resume(setup):
    started = time.perf_counter()
    outcomes = _kill_and_resume(setup, 20, seed=2022)
    print(f"\n20 kills: {outcomes}; {time.perf_counter() - started:.1f} s (training alone {setup[2]:.1f} s)")
    assert outcomes["kills"] == 20
