"""The run registry under attack and under faults: run-id validation, folders outside the runs
folder, unique ids, one writer per run, broken and tampered run folders, interrupted deletes,
one-file checkpoints."""
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from astrocore.cli import main
from astrocore.methods.disentangle import DisentanglerConfig, fit
from astrocore.methods.registry import load_run
from astrocore.runs import (DELETING_PREFIX, RunError, RunRecord, check_run_id, claim_run_folder, delete_run,
                            is_being_trained, list_runs, listing_lines, new_run_folder, new_run_id, unlock_run,
                            zip_run)
from astrocore.training import CheckpointError, History, load_checkpoint, read_checkpoint_state, save_checkpoint


@pytest.fixture(scope="module")
def finished(tmp_path_factory, toy_dataset_module):
    """One small finished disentangler run, copied by the tests that tamper with it."""
    root = tmp_path_factory.mktemp("runs")
    config = DisentanglerConfig.preset("fast", epochs=1, latent_dim=2, batch_size=32)
    return fit(toy_dataset_module, config, runs_root=root, run_id="good")


@pytest.fixture(scope="module")
def toy_dataset_module():
    from conftest import toy_spectra

    return toy_spectra()


def _copy(run, root: Path, name: str) -> Path:
    root.mkdir(exist_ok=True)
    target = root / name
    shutil.copytree(run.path, target)
    return target


# ---------------------------------------------------------------------------- run ids
@pytest.mark.parametrize("bad", ["../x", "..", "a/b", "/etc", "", ".hidden", "-dash", "a..b", "x" * 101, "a b",
                                 "caf\u00e9", None, 3])
def test_bad_run_ids_are_refused(bad, tmp_path):
    with pytest.raises(RunError, match="Invalid run id"):
        check_run_id(bad)
    if isinstance(bad, str):
        with pytest.raises(RunError):
            claim_run_folder(tmp_path / "runs", bad, "disentangle")
    assert not (tmp_path / "x").exists() and sorted(p.name for p in tmp_path.iterdir()) in ([], ["runs"])


def test_good_run_ids_pass():
    for good in ("cli-run", "bench-sweep-0.3-dann-1", "A_1.b", "x" * 100):
        assert check_run_id(good) == good


def test_the_cli_refuses_an_escaping_run_id_in_one_line(tmp_path, capsys, toy_dataset_module):
    data = toy_dataset_module.save(tmp_path / "toy")
    for bad in ("../x",):  # (absolute paths and '..' are refused by the same check; see above)
        code = main(["train", "disentangle", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "runs"),
                     "--run-id", bad])
        err = capsys.readouterr().err
        assert code == 2 and "Invalid run id" in err and err.count("astrocore: error") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "toy"] and not list((tmp_path / "runs").iterdir())
    out = subprocess.run([sys.executable, "-m", "astrocore", "train", "--resume", "../x", "--dir", str(tmp_path / "r")],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("astrocore: error: Invalid run id") and "Traceback" not in out.stderr


# ---------------------------------------------------------------------------- unique ids, one writer
def test_3000_ids_made_at_once_never_collide(tmp_path):
    ids = [new_run_id("disentangle", "mdat") for _ in range(3000)]
    assert len(set(ids)) == 3000
    with ThreadPoolExecutor(4) as pool:  # and the folders are claimed atomically
        folders = list(pool.map(lambda _: new_run_folder(tmp_path, "x"), range(3000)))
    assert len({folder.name for folder in folders}) == 3000 == len(list(tmp_path.iterdir()))


def test_a_second_writer_is_refused_and_a_dead_ones_lock_is_free(tmp_path):
    folder = claim_run_folder(tmp_path, "shared", "disentangle")
    assert is_being_trained(folder)
    with pytest.raises(RunError, match="already being trained"):
        claim_run_folder(tmp_path, "shared", "disentangle", resume=True)
    code = ("import sys; from astrocore.runs import claim_run_folder, RunError\n"
            "try:\n    claim_run_folder(sys.argv[1], 'shared', 'disentangle', resume=True)\n"
            "except RunError as e:\n    print(e); sys.exit(7)\n")
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert other.returncode == 7 and f"pid {os.getpid()}" in other.stdout
    RunRecord(id="shared", path=folder, method="disentangle", status="failed").write()  # a final status unlocks
    assert not is_being_trained(folder)
    # A process that dies holding the lock frees it: the OS releases flock locks.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from astrocore.runs import claim_run_folder;"
                               "claim_run_folder(sys.argv[1], 'shared', 'x', resume=True); print('held', flush=True);"
                               "time.sleep(60)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert is_being_trained(folder)
    holder.kill()
    holder.wait()
    assert not is_being_trained(folder)
    claim_run_folder(tmp_path, "shared", "disentangle", resume=True)
    unlock_run(folder)


def test_two_trainings_with_one_id_one_is_refused(tmp_path, toy_dataset_module):
    config = DisentanglerConfig.preset("fast", epochs=1, latent_dim=2, batch_size=32)
    seen = {}

    def progress(step, total, metrics):  # while the first trains, a second writer tries the same id
        if "error" not in seen:
            try:
                fit(toy_dataset_module, config, runs_root=tmp_path, run_id="twice")
                seen["error"] = None
            except RunError as error:
                seen["error"] = str(error)

    fit(toy_dataset_module, config, runs_root=tmp_path, run_id="twice", progress=progress)
    assert "already being trained" in seen["error"]
    assert load_run(tmp_path / "twice").record.status == "done"


# ---------------------------------------------------------------------------- delete and zip
def test_delete_and_zip_refuse_folders_that_are_not_runs_in_the_runs_folder(tmp_path, finished):
    runs = tmp_path / "runs"
    run = _copy(finished, runs, "victim")
    (tmp_path / "precious.txt").write_text("keep")
    for bad in (runs / "..", tmp_path, Path("/etc"), runs / "victim" / ".." / "victim"):
        with pytest.raises((RunError, FileNotFoundError)):
            delete_run(bad)
        with pytest.raises((RunError, FileNotFoundError)):
            zip_run(bad)
    outside = _copy(finished, tmp_path / "elsewhere", "r1")
    with pytest.raises(RunError, match="not inside the runs folder"):
        delete_run(outside, runs)
    with pytest.raises(RunError, match="not inside the runs folder"):
        zip_run(outside, runs)
    (runs / "link").symlink_to(run)
    with pytest.raises(RunError, match="symbolic link"):
        delete_run(runs / "link", runs)
    (run / "secret").symlink_to(tmp_path / "precious.txt")
    assert b"precious" not in zip_run(run, runs) and b"secret" not in zip_run(run, runs)
    delete_run(run, runs)
    assert not run.exists() and (tmp_path / "precious.txt").read_text() == "keep" and outside.exists()


def test_a_crash_in_the_middle_of_a_delete_leaves_no_half_run(tmp_path, finished):
    runs = tmp_path / "runs"
    run = _copy(finished, runs, "doomed")
    _copy(finished, runs, "kept")
    code = ("import shutil, sys, os\nfrom astrocore import runs\n"
            "def crash(path, *a, **k):\n    os.remove(os.path.join(path, 'weights.safetensors')); os._exit(9)\n"
            "runs.shutil.rmtree = crash\nruns.delete_run(sys.argv[1], sys.argv[2])\n")
    died = subprocess.run([sys.executable, "-c", code, str(run), str(runs)], timeout=120)
    assert died.returncode == 9
    leftovers = [p.name for p in runs.iterdir()]
    assert "doomed" not in leftovers and any(name.startswith(DELETING_PREFIX + "doomed-") for name in leftovers)
    assert [r.path.name for r in list_runs(runs)] == ["kept"]  # the half-deleted run is not listed ...
    assert sorted(p.name for p in runs.iterdir()) == ["kept"]  # ... and its remains are cleaned


# ---------------------------------------------------------------------------- broken and tampered folders
def _tamper_config(key, value):
    def change(folder):
        meta = json.loads((folder / "run.json").read_text())
        meta["config"][key] = value
        (folder / "run.json").write_text(json.dumps(meta))
    return change


TAMPERING = {
    "bad-json": (lambda f: (f / "run.json").write_text("{not json"), "not valid JSON"),
    "a-list": (lambda f: (f / "run.json").write_text("[1, 2]"), "not a JSON object"),
    "no-method": (lambda f: (f / "run.json").write_text('{"id": "x"}'), "has no method"),
    "wrong-type": (lambda f: (f / "run.json").write_text('{"id": "x", "method": "disentangle", "config": 3}'),
                   "'config' should be a dict"),
    "latent-1e9": (_tamper_config("latent_dim", 10**9), "do not match its configuration"),
    "hidden-1e7": (_tamper_config("decoder_hidden", [10**7, 10**7]), "do not match its configuration"),
    "bad-config": (_tamper_config("mode", "evil"), "invalid configuration"),
    "no-weights": (lambda f: (f / "weights.safetensors").unlink(), "a file is missing"),
    "cut-weights": (lambda f: (f / "weights.safetensors").write_bytes((f / "weights.safetensors").read_bytes()[:99]),
                    "cannot be loaded"),
    "wrong-shape": (lambda f: __import__("safetensors.torch").torch.save_file(
        {"model.wavelength": torch.zeros(3)}, str(f / "weights.safetensors")), "cannot be loaded"),
    "unknown-method": (lambda f: (f / "run.json").write_text(json.dumps(
        {**json.loads((f / "run.json").read_text()), "method": "evil"})), "Unknown method 'evil'"),
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_a_tampered_run_folder_gives_one_clear_error(name, tmp_path, finished):
    change, message = TAMPERING[name]
    folder = _copy(finished, tmp_path, name)
    change(folder)
    started = time.perf_counter()
    with pytest.raises(RunError, match=message):
        load_run(folder)
    assert time.perf_counter() - started < 10  # refused before allocating anything large


def test_runs_list_survives_broken_folders(tmp_path, finished, capsys):
    runs = tmp_path / "runs"
    _copy(finished, runs, "fine")
    (_copy(finished, runs, "garbled") / "run.json").write_text("\x00\xff{")
    (runs / "orphan").mkdir()
    (runs / "orphan" / "train.log").write_text("crashed")
    (runs / "not-a-run").mkdir()  # an empty folder is not listed
    (runs / "stray.txt").write_text("x")
    interrupted = _copy(finished, runs, "cut-short")
    meta = json.loads((interrupted / "run.json").read_text())
    (interrupted / "run.json").write_text(json.dumps({**meta, "status": "running"}))
    (interrupted / ".checkpoint.safetensors.abc123").write_bytes(b"half")
    records = {r.path.name: r for r in list_runs(runs)}
    assert set(records) == {"fine", "garbled", "orphan", "cut-short"}
    assert records["fine"].status == "done"
    assert records["garbled"].status == "broken" and "not valid JSON" in records["garbled"].message
    assert records["orphan"].status == "broken" and "no run.json" in records["orphan"].message
    assert records["cut-short"].status == "interrupted" and "--resume" in records["cut-short"].message
    assert not (interrupted / ".checkpoint.safetensors.abc123").exists()  # the killed write's leftover
    assert main(["runs", "list", "--dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "broken" in out and "interrupted" in out and "good" in out
    assert len(listing_lines(list(records.values()))) == 4


# ---------------------------------------------------------------------------- checkpoints
class _Task:
    def __init__(self, width=3):
        self.layer = torch.nn.Linear(width, 1)
        self.modules = {"net": self.layer}
        self.optimizers = {"adam": torch.optim.Adam(self.layer.parameters(), lr=0.1)}


def test_a_checkpoint_is_one_file_and_old_pairs_are_checked(tmp_path):
    task = _Task()
    history = History(epochs=[{"epoch": 0}], best_epoch=0, best_value=1.0)
    save_checkpoint(tmp_path, task, 0, history)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors"]
    assert read_checkpoint_state(tmp_path)["epoch"] == 0
    epoch, restored, best = load_checkpoint(tmp_path, _Task())
    assert epoch == 0 and restored.best_epoch == 0 and best is None
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(tmp_path, _Task(width=5))
    (tmp_path / "checkpoint.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path, _Task())
    # The old two-file format: read when checkpoint.json was written after the tensors, refused otherwise.
    from safetensors.torch import save_file

    save_file({"module.net.weight": torch.zeros(1, 3), "module.net.bias": torch.zeros(1)},
              str(tmp_path / "checkpoint.safetensors"))
    legacy = {"epoch": 4, "history": History().to_dict(), "optimizers": {"adam": {
        "state": {}, "param_groups": task.optimizers["adam"].state_dict()["param_groups"]}}}
    (tmp_path / "checkpoint.json").write_text(json.dumps(legacy))
    assert load_checkpoint(tmp_path, _Task())[0] == 4
    os.utime(tmp_path / "checkpoint.json", (time.time() - 100, time.time() - 100))
    with pytest.raises(CheckpointError, match="older than"):
        load_checkpoint(tmp_path, _Task())


def test_train_resume_continues_a_run_of_another_method(tmp_path, capsys):
    """``astrocore train --resume RUN`` reads the method from run.json: a DANN run cut short after its
    last checkpoint (killed in its final save) is finished by the generic command."""
    assert main(["data", "make", "nebulae", "--n-source", "300", "--n-target", "300", "--out",
                 str(tmp_path / "neb.fits")]) == 0
    assert main(["train", "dann", "--data", str(tmp_path / "neb.fits"), "--epochs", "2", "--set",
                 "validator_objects=60", "--out", str(tmp_path / "runs"), "--run-id", "cut"]) == 0
    folder = tmp_path / "runs" / "cut"
    meta = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**meta, "status": "running", "metrics": {}}))
    (folder / "weights.safetensors").unlink()
    assert [r.status for r in list_runs(tmp_path / "runs")] == ["interrupted"]
    with pytest.raises(RunError, match="interrupted.*--resume"):
        load_run(folder)
    capsys.readouterr()
    assert main(["train", "--resume", "cut", "--dir", str(tmp_path / "runs")]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "done"
    run = load_run(folder)
    assert run.record.method == "dann" and run.record.metrics["target"]
    assert main(["train", "--resume", str(folder)]) == 0  # a finished run: nothing to do
    assert "already finished" in capsys.readouterr().err


def test_classify_commands_refuse_a_run_of_another_method_in_one_line(tmp_path, capsys):
    from conftest import toy_spectra

    from astrocore.cli import main
    from astrocore.methods.disentangle import DisentanglerConfig, fit as fit_disentangler

    run = fit_disentangler(toy_spectra(n_fingerprints=3), DisentanglerConfig.preset("fast", epochs=1),
                           runs_root=tmp_path / "runs", run_id="spectra-model")
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text("name,OIII_5007_HB\na,1.0\n")
    assert main(["classify", "nebulae", str(catalogue), "--run", str(run.path),
                 "--out", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert "is a disentangle run; this needs a dann run" in err and "Traceback" not in err
