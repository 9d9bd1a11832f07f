"""The one training loop every astrocore method uses.

A method describes *what* to optimise with a :class:`TrainingTask` (its modules, optimisers, one
training step and its validation metrics); :func:`train` does the rest the same way for all of
them: CPU or CUDA, seeding, shuffling, a progress callback ``(step, total, metrics)``,
cancellation, early stopping on a validation metric, and checkpoints (safetensors + JSON, never
pickle) from which an interrupted run resumes.
"""
from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from . import distributed
from .data.store import is_lazy
from .distributed import is_main_process  # noqa: F401  (the methods' fit ask it before writing)

ProgressCallback = Callable[[int, int, dict], None]
LR_SCHEDULES = ("constant", "cosine")


class TrainingCancelled(RuntimeError):
    """Raised inside :func:`train` when the caller asked to stop."""


def pick_device(device: str = "auto") -> torch.device:
    """``"auto"`` gives CUDA when a GPU is present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_description() -> str:
    """A human-readable name of the device training would use (for the app's sidebar)."""
    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.get_device_name(0)}"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads != 1 else ''})"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class TrainingTask(Protocol):
    """What a method must provide to be trained by :func:`train`."""

    modules: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    monitor: str  # validation metric to minimise for early stopping / best checkpoint

    def training_step(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, float]: ...

    def validation_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]: ...


@dataclass
class LoopSettings:
    """How long and how to iterate; every method's Config carries these fields."""

    epochs: int = 20
    batch_size: int = 128
    seed: int = 0
    patience: int | None = None  # epochs without improvement of the monitored metric; None = never stop early
    device: str = "auto"
    progress_every: int = 10  # batches between progress callbacks
    # "constant", or "cosine": every optimiser's learning rate follows half a cosine from its
    # initial value down to ``lr_final_fraction`` of it over the whole run, step by step.
    lr_schedule: str = "constant"
    lr_final_fraction: float = 0.01

    def __post_init__(self):
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}; got {self.lr_schedule!r}.")

    def lr_factor(self, step: int, total: int) -> float:
        """Multiplier of the initial learning rate before optimiser step ``step`` (0-based) of ``total``."""
        if self.lr_schedule == "constant" or total <= 1:
            return 1.0
        progress = min(1.0, step / (total - 1))
        floor = self.lr_final_fraction
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class History:
    """Per-epoch metrics (train averages and validation), plus the best epoch."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_value: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value if math.isfinite(self.best_value) else None,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "History":
        best = values.get("best_value")
        return cls(
            epochs=list(values.get("epochs", [])),
            best_epoch=int(values.get("best_epoch", -1)),
            best_value=math.inf if best is None else float(best),
            stopped_early=bool(values.get("stopped_early", False)),
            seconds=float(values.get("seconds", 0.0)),
        )


# ---------------------------------------------------------------------- state (no pickle)
def _flatten_optimizer(name: str, state: dict, tensors: dict) -> dict:
    """Move an optimizer state_dict's tensors into ``tensors``; return the JSON-able rest."""
    per_param = {}
    for index, values in state["state"].items():
        entry = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optim.{name}.{index}.{key}"] = value.detach().cpu().contiguous()
                entry[key] = {"tensor": f"optim.{name}.{index}.{key}"}
            else:
                entry[key] = value
        per_param[str(index)] = entry
    return {"state": per_param, "param_groups": state["param_groups"]}


def _unflatten_optimizer(structure: dict, tensors: dict) -> dict:
    state = {}
    for index, values in structure["state"].items():
        state[int(index)] = {
            key: tensors[value["tensor"]] if isinstance(value, dict) and "tensor" in value else value
            for key, value in values.items()
        }
    return {"state": state, "param_groups": structure["param_groups"]}


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that readers never see half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.replace(tmp_name, path)


def save_modules(path: Path, modules: dict[str, torch.nn.Module]) -> None:
    """Save module weights (and buffers) as one safetensors file, atomically."""
    tensors = {
        f"{name}.{key}": value.detach().cpu().contiguous()
        for name, module in modules.items()
        for key, value in module.state_dict().items()
    }
    atomic_save_tensors(Path(path), tensors)


def load_modules(path: Path, modules: dict[str, torch.nn.Module]) -> None:
    """Load weights written by :func:`save_modules` into ``modules`` (strict)."""
    tensors = load_file(str(path))
    for name, module in modules.items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})


def atomic_save_tensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file under a temporary name, flush it to disk, then rename it over
    ``path``: a kill at any moment leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        save_file(tensors, tmp_name, metadata=metadata)
        with open(tmp_name, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _module_tensors(prefix: str, states: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{name}.{key}": value.detach().cpu().contiguous()
            for name, state in states.items() for key, value in state.items()}


def _module_states(prefix: str, tensors: dict[str, torch.Tensor], names) -> dict[str, dict[str, torch.Tensor]]:
    return {name: {k[len(prefix) + len(name) + 2:]: v for k, v in tensors.items()
                   if k.startswith(f"{prefix}.{name}.")} for name in names}


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored (damaged, or from another model); the message says why."""


#: The safetensors metadata key holding a checkpoint's loop state (JSON).
CHECKPOINT_METADATA_KEY = "astrocore"


def save_checkpoint(folder: Path, task: TrainingTask, epoch: int, history: History,
                    best_state: dict[str, dict[str, torch.Tensor]] | None = None) -> None:
    """Weights, optimiser state and loop state after ``epoch`` as ONE safetensors file (the loop
    state is JSON in its metadata), replaced atomically: a kill at any moment leaves the previous
    checkpoint or this one, never a mix of two.

    ``best_state`` (the modules' weights at the best epoch so far) is stored beside them, so a
    resumed run still ends at its best epoch even when that epoch came before the interruption.
    """
    folder = Path(folder)
    tensors = _module_tensors("module", {name: module.state_dict() for name, module in task.modules.items()})
    if best_state is not None:
        tensors.update(_module_tensors("best", best_state))
    optimizers = {name: _flatten_optimizer(name, opt.state_dict(), tensors) for name, opt in task.optimizers.items()}
    state = json.dumps({"epoch": epoch, "history": history.to_dict(), "optimizers": optimizers})
    atomic_save_tensors(folder / "checkpoint.safetensors", tensors, metadata={CHECKPOINT_METADATA_KEY: state})
    (folder / "checkpoint.json").unlink(missing_ok=True)  # the old two-file format, now stale


def read_checkpoint_state(folder: Path) -> dict | None:
    """The loop state (epoch, history, optimizers' structure) of ``folder``'s checkpoint, or None
    without one. Checkpoints written before the one-file format keep it in ``checkpoint.json``."""
    path = Path(folder) / "checkpoint.safetensors"
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        text = metadata.get(CHECKPOINT_METADATA_KEY)
        if text is None:  # the old pair: both files, written in that order
            legacy = Path(folder) / "checkpoint.json"
            if not legacy.exists():
                raise CheckpointError(f"{path} has no loop state (and there is no checkpoint.json).")
            if legacy.stat().st_mtime < path.stat().st_mtime:  # killed between the two writes
                raise CheckpointError(f"{legacy} is older than {path.name} (an interrupted checkpoint of the "
                                      "old format); start the run afresh.")
            text = legacy.read_text()
        state = json.loads(text)
    except CheckpointError:
        raise
    except Exception as error:  # safetensors' errors, bad JSON, unreadable files
        raise CheckpointError(f"The checkpoint {path} cannot be read ({type(error).__name__}: "
                              f"{str(error)[:200]}); start the run afresh.") from None
    if not isinstance(state, dict) or not {"epoch", "history", "optimizers"} <= set(state):
        raise CheckpointError(f"The checkpoint {path} has an incomplete loop state.")
    return state


def load_checkpoint(folder: Path, task: TrainingTask) -> tuple[int, History, dict | None] | None:
    """Restore a checkpoint into ``task``; returns (last finished epoch, history, best-epoch
    weights or None) or None when there is no checkpoint. :class:`CheckpointError` when the
    checkpoint is damaged or does not fit ``task``."""
    folder = Path(folder)
    meta = read_checkpoint_state(folder)
    if meta is None:
        return None
    try:
        tensors = load_file(str(folder / "checkpoint.safetensors"))
        for name, state in _module_states("module", tensors, task.modules).items():
            task.modules[name].load_state_dict(state)
        for name, optimizer in task.optimizers.items():
            optimizer.load_state_dict(_unflatten_optimizer(meta["optimizers"][name], tensors))
        has_best = any(key.startswith("best.") for key in tensors)  # absent before the first epoch
        best_state = _module_states("best", tensors, task.modules) if has_best else None
        return int(meta["epoch"]), History.from_dict(meta["history"]), best_state
    except Exception as error:
        raise CheckpointError(f"The checkpoint in {folder} does not fit this model ({type(error).__name__}: "
                              f"{str(error)[:300]}); start the run afresh.") from None


# ---------------------------------------------------------------------- the loop
def _take(values, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` of a tensor, or read from an on-disk array (only those rows)."""
    if is_lazy(values):
        return torch.as_tensor(values.take(index.numpy()))
    return values[index]


def _batches(arrays: dict, batch_size: int, generator: torch.Generator | None):
    """Yield ``(batch, rows, share)``: the global batches of a (seed, epoch)-shuffled order (or in
    order without ``generator``), each cut to this rank's part under torchrun; ``rows`` counts this
    rank's real rows (0 for a placeholder) and ``share`` is their fraction of the global batch."""
    n = len(next(iter(arrays.values())))
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        index, share = distributed.shard(order[start:start + batch_size])
        rows = len(index) if share > 0 else 0
        yield {key: _take(value, index) for key, value in arrays.items()}, rows, share


def _to_tensors(arrays: dict) -> dict:
    """In-memory arrays as tensors (no copy); on-disk arrays stay on disk and are read per batch."""
    return {key: value if is_lazy(value) else torch.as_tensor(value) for key, value in arrays.items()}


def _mean_metrics(rows: list[tuple[int, dict]]) -> dict:
    """Row-weighted means of the metrics over batches (and over ranks under torchrun)."""
    keys = list(rows[0][1]) if rows else []  # the same order on every rank
    sums = [sum(size * metrics[key] for size, metrics in rows if size) for key in keys]
    totals = distributed.all_reduce_sum(torch.tensor([*sums, sum(size for size, _ in rows)], dtype=torch.float64))
    total = float(totals[-1]) or 1.0
    return {key: float(value) / total for key, value in zip(keys, totals[:-1].tolist())}


def count_batches(n_objects: int, batch_size: int) -> int:
    """Batches in one epoch of ``n_objects`` (the last one may be short)."""
    return max(1, math.ceil(n_objects / batch_size))


def train(
    task: TrainingTask,
    train_arrays: dict[str, np.ndarray],
    val_arrays: dict[str, np.ndarray] | None,
    settings: LoopSettings,
    progress: ProgressCallback | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> History:
    """Train ``task`` for ``settings.epochs`` epochs and leave its modules at the best epoch.

    ``progress(step, total, metrics)`` is called every ``settings.progress_every`` batches and at
    the end of each epoch (metrics then include the validation values). ``should_stop()`` is polled
    between batches; when it returns True the loop saves a checkpoint and raises
    :class:`TrainingCancelled`. With ``checkpoint_dir`` a checkpoint is written after each epoch, and
    ``resume=True`` continues from it.

    Arrays may be in memory (NumPy) or on disk (:mod:`astrocore.data.store`: each batch reads only
    its rows). Under ``torchrun`` (see :mod:`astrocore.distributed`) ``settings.batch_size`` is the
    global batch: each rank trains on its disjoint part of every batch, gradients are averaged
    before each optimiser step (weighted by the ranks' shares), metrics are averaged over ranks,
    and only rank 0 calls ``progress`` and writes checkpoints.
    """
    distributed.init_from_env()
    device = pick_device(settings.device)
    for module in task.modules.values():
        module.to(device)
    train_tensors = _to_tensors(train_arrays)
    val_tensors = _to_tensors(val_arrays) if val_arrays else None

    history, first_epoch, best_state = History(), 0, None
    epochs_without_improvement = 0
    if resume and checkpoint_dir is not None:
        restored = load_checkpoint(checkpoint_dir, task)
        if restored is not None:
            last_epoch, history, best_state = restored
            first_epoch = last_epoch + 1
            epochs_without_improvement = last_epoch - history.best_epoch if best_state is not None else 0
    # Each group remembers its initial rate (saved with the optimiser state, so resume continues
    # the same schedule).
    for optimizer in task.optimizers.values():
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    if distributed.broadcast_object(first_epoch) != first_epoch:
        raise RuntimeError(f"Rank {distributed.rank()} would resume at epoch {first_epoch}, rank 0 elsewhere: under "
                           "torchrun every rank must see the same checkpoint folder (a shared file system).")
    distributed.broadcast_modules(task.modules)
    averager = distributed.GradientAverager(task.optimizers) if distributed.is_distributed() else None
    try:
        history = _epochs(task, train_tensors, val_tensors, settings, progress, checkpoint_dir, should_stop, device,
                          history, first_epoch, best_state, epochs_without_improvement, averager)
        distributed.barrier()  # rank 0's last checkpoint is on disk before any rank goes on
        return history
    finally:
        if averager is not None:
            averager.remove()


def _epochs(task, train_tensors, val_tensors, settings, progress, checkpoint_dir, should_stop, device, history,
            first_epoch, best_state, epochs_without_improvement, averager) -> History:
    """The epochs of :func:`train` from ``first_epoch`` on."""
    main = is_main_process()
    n_train = len(next(iter(train_tensors.values())))
    batches_per_epoch = count_batches(n_train, settings.batch_size)
    total = settings.epochs * batches_per_epoch
    started = time.perf_counter() - history.seconds
    for epoch in range(first_epoch, settings.epochs):
        # Shuffling depends only on (seed, epoch), so a resumed run sees the same batches.
        generator = torch.Generator().manual_seed(settings.seed * 100_003 + epoch)
        # The training steps' random draws (dropout, augmentations, noise, twins) come from torch's
        # global generator, reseeded from (seed, epoch): a resumed run repeats them.
        torch.manual_seed(settings.seed * 100_003 + epoch + 50_021)
        for module in task.modules.values():
            module.train()
        rows = []
        for batch_index, (batch, n_rows, share) in enumerate(_batches(train_tensors, settings.batch_size, generator)):
            if should_stop is not None and distributed.any_rank(should_stop()):
                # The checkpoint written when the last epoch ended stands: saving now would store
                # this epoch's first batches' updates as if they were the last epoch's weights.
                raise TrainingCancelled(f"stopped by the user at epoch {epoch}")
            batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
            step = epoch * batches_per_epoch + batch_index + 1
            factor = settings.lr_factor(step - 1, total)
            for optimizer in task.optimizers.values():
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] * factor
            if averager is not None:
                averager.weight = share
                distributed.set_batch_share(share)
            metrics = task.training_step(batch, epoch)
            rows.append((n_rows, metrics))
            if main and progress is not None and (batch_index + 1) % settings.progress_every == 0:
                progress(step, total, {"epoch": epoch, **metrics})
        epoch_metrics = {"epoch": epoch, **{f"train_{k}": v for k, v in _mean_metrics(rows).items()}}
        distributed.average_buffers(task.modules)  # batch-norm statistics seen by every rank
        if val_tensors is not None:
            for module in task.modules.values():
                module.eval()
            with torch.no_grad():
                val_rows = [
                    (n_rows, task.validation_step({k: v.to(device) for k, v in batch.items()}))
                    for batch, n_rows, _ in _batches(val_tensors, 1024 * distributed.world_size(), None)
                ]
            epoch_metrics.update({f"val_{k}": v for k, v in _mean_metrics(val_rows).items()})
        epoch_metrics["seconds"] = time.perf_counter() - started
        history.epochs.append(epoch_metrics)
        history.seconds = epoch_metrics["seconds"]

        monitored = epoch_metrics.get(task.monitor)
        if monitored is not None and monitored < history.best_value:
            history.best_value, history.best_epoch = float(monitored), epoch
            best_state = {
                name: {k: v.detach().clone() for k, v in module.state_dict().items()}
                for name, module in task.modules.items()
            }
            epochs_without_improvement = 0
        else:
            epochs_without_improvement += 1
        if checkpoint_dir is not None and main:
            save_checkpoint(checkpoint_dir, task, epoch, history, best_state)
        if main and progress is not None:
            progress((epoch + 1) * batches_per_epoch, total, epoch_metrics)
        if settings.patience is not None and epochs_without_improvement >= settings.patience:
            history.stopped_early = True
            break

    if best_state is not None:
        for name, module in task.modules.items():
            module.load_state_dict(best_state[name])
    for module in task.modules.values():
        module.eval()
    return history
