"""Data-parallel training across processes started by ``torchrun`` (one or several machines).

``torchrun --nproc_per_node N -m astrocore train ...`` starts N copies of the command with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR`` / ``MASTER_PORT`` in their environment;
:func:`init_from_env` joins them into one process group (NCCL on GPUs, gloo on CPUs). Without those
variables (a plain ``python -m astrocore ...``) nothing here does anything: world size 1, rank 0.

:func:`astrocore.training.train` uses these helpers to give each rank a disjoint part of every
global batch, average the gradients before each optimiser step and average the metrics; the
methods' ``fit`` write the run only where :func:`is_main_process` is True. This module imports no
other astrocore module.
"""
from __future__ import annotations

import os

import torch
from torch import distributed as dist


def init_from_env() -> bool:
    """Join the process group torchrun describes in the environment; True when there is one.

    NCCL when CUDA is available (each process on GPU ``LOCAL_RANK``), gloo otherwise. Idempotent;
    a world of one process (or no torchrun variables) initialises nothing and returns False.
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "MASTER_ADDR" not in os.environ:
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return dist.get_world_size() > 1


def leave(finished: bool = True) -> None:
    """Leave the process group before the process exits (a no-op without one). ``finished``: every
    rank got here normally, so wait for the others first. Exiting with gloo's threads still
    connected let one rank abort (SIGABRT) when its peer closed first."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 (and always without torchrun): the one process that writes a run."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(value):
    """Rank 0's ``value`` on every rank (any picklable object sent by torch; used for run ids)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value) -> list:
    """Every rank's ``value``, in rank order, on every rank."""
    if not is_distributed():
        return [value]
    values = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def _communication_device(tensor: torch.Tensor) -> torch.device:
    return tensor.device if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over ranks (a new tensor on ``values``' device)."""
    if not is_distributed():
        return values.clone()
    work = values.detach().to(_communication_device(values), copy=True)
    dist.all_reduce(work)
    return work.to(values.device)


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is True on any rank (e.g. a cancel request seen by one of them)."""
    if not is_distributed():
        return bool(flag)
    return bool(all_reduce_sum(torch.tensor([1.0 if flag else 0.0]))[0] > 0)


def shard(index: torch.Tensor) -> tuple[torch.Tensor, float]:
    """This rank's rows of a global batch ``index`` and their weight (share of the batch).

    Rank r takes rows r, r + N, r + 2N, ... (N ranks), so the ranks' rows are disjoint and their
    union is the batch. A rank left without rows (a last batch shorter than N) gets the first row
    with weight 0, so it still takes part in every collective operation but adds nothing.
    """
    if not is_distributed():
        return index, 1.0
    part = index[rank()::world_size()]
    if len(part) == 0:
        return index[:1], 0.0
    return part, len(part) / max(1, len(index))


def broadcast_modules(modules: dict[str, torch.nn.Module]) -> None:
    """Give every rank rank 0's parameters and buffers."""
    if not is_distributed():
        return
    for module in modules.values():
        for tensor in list(module.parameters()) + list(module.buffers()):
            work = tensor.data.to(_communication_device(tensor.data), copy=True)
            dist.broadcast(work, src=0)
            tensor.data.copy_(work)


def average_buffers(modules: dict[str, torch.nn.Module]) -> None:
    """Average floating-point buffers (batch-norm running statistics) over ranks."""
    if not is_distributed():
        return
    for module in modules.values():
        for buffer in module.buffers():
            if buffer.is_floating_point():
                buffer.data.copy_(all_reduce_sum(buffer.data) / world_size())


_batch_share = 1.0


def set_batch_share(share: float) -> None:
    """This rank's share of the current global batch (the training loop sets it before each step;
    :class:`SyncedBatchNorm1d` reads it)."""
    global _batch_share
    _batch_share = float(share)


class _SumOverRanks(torch.autograd.Function):
    """Sum over ranks whose backward weighs each rank's gradient by its batch share (and divides by
    this rank's): after :class:`GradientAverager`'s share-weighted sum, the gradient is that of the
    mean loss over the global batch, as for one process."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, share: float) -> torch.Tensor:
        ctx.share = share
        return all_reduce_sum(values)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        total = all_reduce_sum(grad * ctx.share)  # every rank takes part, even one without rows
        return (total / ctx.share if ctx.share > 0 else torch.zeros_like(grad)), None


class SyncedBatchNorm1d(torch.nn.BatchNorm1d):
    """BatchNorm1d that, in training under torchrun, normalises with the statistics of the whole
    global batch (all ranks' rows), on CPUs too (torch's SyncBatchNorm needs GPUs), so N processes
    train as one. Anywhere else it is torch's BatchNorm1d; the saved state is the same."""

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(values)
        share = _batch_share
        rows = values if share > 0 else values[:0]  # a rank's placeholder row adds nothing
        width = values.shape[1]
        sums = torch.cat([rows.sum(0), (rows * rows).sum(0), values.new_tensor([float(len(rows))])])
        total = _SumOverRanks.apply(sums, share)
        count = total[-1].detach().clamp_min(1.0)
        mean = total[:width] / count
        variance = (total[width:2 * width] / count - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * variance * count / (count - 1).clamp_min(1.0))
        normalised = (values - mean) / torch.sqrt(variance + self.eps)
        return normalised * self.weight + self.bias if self.affine else normalised


class GradientAverager:
    """Before every optimiser step, replace each gradient by the batch-weighted average over ranks.

    Installed by :func:`astrocore.training.train` as a step pre-hook on each of a task's optimisers,
    so the tasks' own ``loss.backward(); optimizer.step()`` stay as they are. With ``weight`` set to
    each rank's share of the global batch, the averaged gradient of per-rank mean losses equals the
    gradient of the mean loss over the whole global batch. Gradients of the same parameters must
    exist on every rank (the ranks run the same code on the same modules).
    """

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]):
        self.weight = 1.0
        self.handles = [optimizer.register_step_pre_hook(self._hook) for optimizer in optimizers.values()]

    def _hook(self, optimizer, args, kwargs) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([grad.reshape(-1) for grad in grads]) * self.weight
        flat = all_reduce_sum(flat)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
