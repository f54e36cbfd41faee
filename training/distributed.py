"""Distributed data parallel (torchrun) plumbing; a single process is world size 1.

``torchrun --nproc_per_node=N train.py ...`` sets RANK, LOCAL_RANK and WORLD_SIZE; the process
group then uses NCCL on CUDA and gloo on CPU. Every collective here is a no-op in one process,
so the training loop has a single code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from utils.config import TrainConfig
from utils.device import configure_cuda, resolve_device
from utils.errors import ConfigError, LaunchError, UserError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over all ranks (exact for counts and sums of losses)."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def any(self, flags: list[bool]) -> list[bool]:
        """Each flag OR-ed over all ranks, in one exchange: true on every rank when it is true
        on at least one."""
        if not self.enabled:
            return flags
        return [total > 0 for total in self.sum([float(flag) for flag in flags])]

    def broadcast_from_main(self, flags: list[bool]) -> list[bool]:
        """Rank 0's ``flags``, on every rank, in one exchange."""
        if not self.enabled:
            return flags
        tensor = torch.tensor([float(flag) for flag in flags], device=self._device())
        dist.broadcast(tensor, src=0)
        return [value > 0 for value in tensor.tolist()]

    def main_count(self, count: int) -> int:
        """Rank 0's ``count`` on every rank: a plan that all ranks follow."""
        if not self.enabled:
            return count
        tensor = torch.tensor([count], dtype=torch.int64, device=self._device())
        dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def share_buffers_from_main(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics). After a step each
        rank's include its own last batch; rank 0's are the ones checkpoints keep, so
        validation on every rank scores the model that is saved."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)

    def _device(self) -> torch.device:
        # NCCL only reduces CUDA tensors; gloo reduces CPU tensors.
        if dist.get_backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def start_processes(
    cfg: TrainConfig, trained_world_size: int | None = None
) -> tuple[Distributed, torch.device]:
    """Where this process trains: ``train.device`` set up (cuDNN's kernel choice too), the
    process group torchrun describes joined, and each torchrun process on its own GPU. A
    resumed run (``trained_world_size``) must have the process count it trained with."""
    device = resolve_device(cfg.device)
    configure_cuda(device, cfg.deterministic)
    group = init_distributed(device)
    if trained_world_size is not None:
        check_same_world_size(trained_world_size, group.world_size)
    return group, training_device(device, cfg.sync_batchnorm, group)


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group torchrun describes in the environment, if any: NCCL when
    training on CUDA ``device``s, gloo otherwise (also on a GPU host told to train on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl":
            local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
            check_enough_gpus(local_processes, torch.cuda.device_count())
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    return Distributed(dist.get_rank(), local_rank, dist.get_world_size())


def check_enough_gpus(local_processes: int, gpus: int) -> None:
    """One GPU per torchrun process on a machine: more processes than GPUs is one error line,
    not CUDA's "invalid device ordinal". Every process checks, before any joins the group,
    so none waits there for a peer that has failed."""
    if local_processes > gpus:
        raise LaunchError(
            f"torchrun started {local_processes} processes on this machine, but it has "
            f"{gpus} GPU(s); use --nproc_per_node={gpus} or fewer, or --set train.device=cpu"
        )


def shutdown_distributed(all_ranks_finished: bool) -> None:
    """Leave the process group. After a run every rank finished, the ranks first meet at a
    barrier: rank 0 still writes files after the last collective, and under gloo a rank that
    tore its connections down first was seen to abort at exit. After an error a peer may
    never arrive, so there is no barrier."""
    if not dist.is_initialized():
        return
    if all_ranks_finished:
        dist.barrier()
    dist.destroy_process_group()


def training_device(device: torch.device, sync_batchnorm: bool, group: Distributed) -> torch.device:
    """``device``, with each torchrun process on its own GPU."""
    if device.type == "cuda" and group.enabled:
        device = torch.device("cuda", group.local_rank)
    if sync_batchnorm and group.enabled and device.type != "cuda":
        raise ConfigError("train.sync_batchnorm needs CUDA devices (PyTorch's SyncBatchNorm)")
    return device


def check_same_world_size(trained: int | None, now: int) -> None:
    """Refuse to resume with another process count: the step count and the shards assume it."""
    if trained is not None and trained != now:
        raise UserError(
            f"this run trained with {trained} process(es) and is resumed with {now}; its "
            f"learning-rate schedule and data shards assume {trained}, so resume with {trained}"
        )
