"""Background jobs (astrocore.jobs): detached training / evaluation / embedding processes whose state
lives in the run folder."""
import json
import os
import sys
import time

import numpy as np
import pytest
from conftest import toy_spectra

from astrocore import jobs
from astrocore.runs import RunRecord, list_runs


@pytest.fixture
def toy_folder(tmp_path):
    """A small dataset on disk, readable by ``astrocore train --data PATH``."""
    return toy_spectra(n_fingerprints=10).save(tmp_path / "toy")


def test_training_command_is_the_cli_command(tmp_path):
    command = jobs.training_command("r1", tmp_path, data="apogee", n_stars=3, epochs=2, mode="at",
                                    conditional=("teff", "logg"), overrides={"lambdas": (0.1, 0.2), "latent_dim": 4})
    assert command[:5] == [sys.executable, "-m", "astrocore", "train", "disentangle"]
    assert command[command.index("--run-id") + 1] == "r1"
    assert "lambdas=[0.1, 0.2]" in command and "latent_dim=4" in command
    assert command[command.index("--out") + 1] == str(tmp_path.resolve())


def test_training_job_runs_in_the_background_and_reports_progress(toy_folder, tmp_path):
    root = tmp_path / "runs"
    run_id = jobs.start_training(data=str(toy_folder), epochs=2, run_id="bg-train", runs_root=root,
                                 overrides={"batch_size": 32, "latent_dim": 4})
    folder = root / run_id
    record = jobs.read_job(folder, "train")
    assert record["pid"] > 0 and "train" in record["command"]
    assert jobs.is_alive(record["pid"], run_id)
    with pytest.raises(jobs.JobError, match="already running"):
        jobs.launch(folder, "train", [sys.executable, "-c", "pass"], folder / "x.log")
    # A second session asking for the same run (e.g. two browser tabs on a first visit) is refused
    # without touching the running job's files.
    (folder / "history.jsonl").touch()
    with pytest.raises(jobs.JobError):
        jobs.start_training(data=str(toy_folder), epochs=2, run_id="bg-train", runs_root=root)
    assert (folder / "history.jsonl").exists()
    status = jobs.wait(folder, timeout=240)
    assert status["state"] == "done", status
    assert status["fraction"] == 1.0 and status["metrics"]
    assert (folder / "train.log").read_text().startswith("$ ")
    assert RunRecord.read(folder).status == "done"
    assert any(job["run_id"] == run_id for job in jobs.training_jobs(root))
    assert jobs.active_training_jobs(root) == []
    assert not jobs.is_alive(record["pid"], run_id)


def test_cancel_stops_training_and_marks_the_run(toy_folder, tmp_path):
    root = tmp_path / "runs"
    run_id = jobs.start_training(data=str(toy_folder), epochs=500, run_id="bg-cancel", runs_root=root,
                                 overrides={"batch_size": 16, "latent_dim": 4})
    folder = root / run_id
    deadline = time.time() + 120
    while jobs.job_status(folder)["state"] != "running" and time.time() < deadline:
        time.sleep(0.3)
    assert jobs.job_status(folder)["state"] == "running"
    status = jobs.cancel(folder, wait=True, grace=20)
    assert status["state"] == "cancelled", status
    assert (folder / "CANCEL").exists()
    assert RunRecord.read(folder).status == "cancelled"


def test_cancel_escalates_when_the_process_ignores_the_file(tmp_path):
    folder = tmp_path / "runs" / "stubborn"
    record = jobs.launch(folder, "train", [sys.executable, "-c", "import time; time.sleep(120)  # stubborn"],
                         folder / "train.log", kind="train")
    assert jobs.job_status(folder)["state"] == "starting"
    started = time.time()
    status = jobs.cancel(folder, wait=True, grace=0.5)
    assert status["state"] == "cancelled"
    assert time.time() - started < 15
    assert not jobs.is_alive(record["pid"])


def test_a_failing_job_reports_a_readable_reason(tmp_path):
    root = tmp_path / "runs"
    run_id = jobs.start_training(data=str(tmp_path / "no-such-data.fits"), epochs=1, run_id="bg-fail",
                                 runs_root=root)
    status = jobs.wait(root / run_id, timeout=120)
    assert status["state"] == "failed"
    assert "no-such-data.fits" in status["message"] and "Traceback" not in status["message"]
    assert status["log"]


def test_dead_process_with_running_record_becomes_failed(tmp_path):
    folder = tmp_path / "runs" / "crashed"
    folder.mkdir(parents=True)
    RunRecord(id="crashed", path=folder, method="disentangle").write()  # status "running"
    jobs.launch(folder, "train", [sys.executable, "-c", "import sys; sys.exit(3)"], folder / "train.log",
                kind="train")
    status = jobs.wait(folder, timeout=30)
    assert status["state"] == "failed"
    assert RunRecord.read(folder).status == "failed"
    assert [r.status for r in list_runs(tmp_path / "runs")] == ["failed"]


def test_is_alive_rejects_unknown_and_reused_pids():
    assert not jobs.is_alive(None)
    assert not jobs.is_alive(2**22 + 12345)
    assert jobs.is_alive(os.getpid())
    assert not jobs.is_alive(os.getpid(), token="no-such-token-in-the-command-line")


def test_evaluation_and_embedding_jobs_write_their_outputs(toy_folder, tmp_path):
    from astrocore.data import load_source
    from astrocore.methods.disentangle import DisentanglerConfig, fit

    dataset, source = load_source(str(toy_folder))
    config = DisentanglerConfig.preset("fast", epochs=2, batch_size=32, latent_dim=4)
    run = fit(dataset, config, runs_root=tmp_path / "runs", run_id="bg-eval", data_source=source)
    jobs.start_evaluation(run.path, max_objects=200)
    jobs.start_embedding(run.path, "z", "pca")
    embedded = jobs.wait(run.path, "embed-z-pca", timeout=120)
    assert embedded["state"] == "done", embedded
    with np.load(jobs.embedding_path(run.path, "z", "pca")) as stored:
        assert stored["coordinates"].shape == (len(dataset), 2)
    evaluated = jobs.wait(run.path, "evaluate", timeout=300)
    assert evaluated["state"] == "done", evaluated
    result = jobs.read_evaluation(run.path)
    assert result["run"] == "bg-eval" and set(result["r2"]) >= {"teff", "logg"}
    assert "X" in result or "X_error" in result
    json.dumps(result)
