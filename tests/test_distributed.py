"""Data-parallel training (astrocore.distributed + training.train) on 2 CPU processes with gloo.

Claims, each against one process at the same global batch size:
- the one loop: per-epoch train and validation losses agree to 1e-4 (relative) — the ranks'
  gradients are averaged with the weights of their shares of each batch, so the only difference is
  float32 summation order; a run cancelled (by one rank's request) after two epochs and resumed
  under 2 processes matches too; only rank 0 reports progress and writes checkpoints;
  the task's batch norm (``distributed.SyncedBatchNorm1d``) sees the global batch, also in the
  last batch, which the ranks share unevenly;
- ``torchrun -m astrocore train disentangle`` (adversaries, twin term, batch-normalised latent,
  decoder refit): one run folder, written by rank 0, whose per-epoch training loss agrees to 1e-4.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import distributed as dist
from torch import multiprocessing as mp
from torch import nn
from torch.nn import functional as F

from astrocore import distributed
from astrocore.training import LoopSettings, TrainingCancelled, train

ROOT = Path(__file__).resolve().parents[1]


class RegressionTask:
    monitor = "val_loss"

    def __init__(self):
        torch.manual_seed(3)
        # No bias before the batch norm: its gradient is zero up to rounding, which Adam turns into
        # steps of either sign, so the running mean (not the loss) would differ between runs.
        self.net = nn.Sequential(nn.Linear(8, 32, bias=False), distributed.SyncedBatchNorm1d(32), nn.Tanh(),
                                 nn.Linear(32, 1))
        self.modules = {"net": self.net}
        self.optimizers = {"net": torch.optim.Adam(self.net.parameters(), lr=1e-2)}

    def training_step(self, batch, epoch):
        loss = F.mse_loss(self.net(batch["x"]), batch["y"])
        self.optimizers["net"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["net"].step()
        return {"loss": float(loss.detach())}

    def validation_step(self, batch):
        return {"loss": float(F.mse_loss(self.net(batch["x"]), batch["y"]))}


def _data(n=500):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (np.sin(x[:, :1] * 2) + x[:, 1:2] * x[:, 2:3]).astype(np.float32)
    return {"x": x[:399], "y": y[:399]}, {"x": x[400:], "y": y[400:]}


def _fit(epochs, checkpoint_dir=None, resume=False, progress=None, should_stop=None):
    train_arrays, val_arrays = _data()
    # 399 rows in batches of 64: the last batch (15 rows) is split 8 / 7.
    settings = LoopSettings(epochs=epochs, batch_size=64, seed=1, device="cpu", lr_schedule="cosine")
    history = train(RegressionTask(), train_arrays, val_arrays, settings, progress=progress,
                    checkpoint_dir=checkpoint_dir, resume=resume, should_stop=should_stop)
    return [(row["train_loss"], row["val_loss"]) for row in history.epochs]


def _worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    calls = []
    try:
        checkpoints = Path(folder) / "checkpoints"
        checkpoints.mkdir(exist_ok=True)
        full = _fit(4, progress=lambda *args: calls.append(args[0]))
        polls = iter(range(100))  # cancelled at the first batch of the third epoch (7 batches per epoch)
        with pytest.raises(TrainingCancelled):
            _fit(4, checkpoint_dir=checkpoints, should_stop=lambda: next(polls) == 14)
        resumed = _fit(4, checkpoint_dir=checkpoints, resume=True)
        result = {"full": full, "resumed": resumed, "progress_calls": len(calls),
                  "world": distributed.world_size()}
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_processes_match_one_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    single = _fit(4)
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    for result in ranks:
        np.testing.assert_allclose(result["full"], single, rtol=1e-4)
        np.testing.assert_allclose(result["resumed"], single, rtol=1e-4)
    assert ranks[0]["progress_calls"] > 0 and ranks[1]["progress_calls"] == 0
    assert single[-1][0] < 0.9 * single[0][0]  # it does learn


def test_without_torchrun_nothing_changes():
    assert not distributed.init_from_env()
    assert distributed.world_size() == 1 and distributed.is_main_process()
    index = torch.arange(10)
    part, share = distributed.shard(index)
    assert part is index and share == 1.0


@pytest.fixture(scope="module")
def grid_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "grid"
    subprocess.run([sys.executable, "-m", "astrocore", "data", "make", "apogee", "--n-stars", "2", "--out", str(path)],
                   check=True, cwd=ROOT, capture_output=True)
    return path


def test_torchrun_trains_the_disentangler_like_one_process(tmp_path, grid_data):
    # Adversaries, twin term, the latent batch norm (global batch statistics) and the decoder refit
    # see the global batch as one process does: the curves agree to float32 sums.
    exact = ["epochs=2", "batch_size=64", "decoder_refit_epochs=1", "twin_code_steps=0", "patience=null"]
    command = ["-m", "astrocore", "train", "disentangle", "--data", str(grid_data), "--mode", "mdat", "--seed", "0"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, *command, "--set", *exact, "--out", str(tmp_path / "one"), "--run-id", "one"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    double = subprocess.run([*torchrun, *command, "--set", *exact, "--out", str(tmp_path / "two")], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert double.returncode == 0, double.stderr[-3000:]
    folders = [path for path in (tmp_path / "two").iterdir() if not path.name.startswith(".")]
    assert len(folders) == 1, folders  # both ranks trained one run
    run = json.loads((folders[0] / "run.json").read_text())
    reference = json.loads((tmp_path / "one" / "one" / "run.json").read_text())
    assert run["status"] == "done" and run["metrics"]["twins"] == "on"
    assert (folders[0] / "weights.safetensors").exists() and (folders[0] / "arrays.npz").exists()
    curve = [row["train_loss"] for row in run["history"]["epochs"] if "phase" not in row]
    expected = [row["train_loss"] for row in reference["history"]["epochs"] if "phase" not in row]
    assert len(curve) == len(expected) == 2
    np.testing.assert_allclose(curve, expected, rtol=1e-4)  # measured: 1e-8
    assert json.loads(double.stdout[double.stdout.index("{"):])["run"] == folders[0].name  # rank 0 printed
