"""Data-parallel training (DDP): one run on several GPUs, or several CPU processes, launched torchrun-style.

``distributed`` (a run setting): 0 (default) trains in one process; 1 trains on every visible GPU, one process
each (one process when there are fewer than two); N >= 2 trains in exactly N processes: N GPUs, or with
``device: cpu`` N CPU processes over the gloo backend (how it is tested). A sweep child with several GPUs
(``gpus_per_child > 1``) gets ``distributed: 1``. The configuration, the run folder and the outputs are those of a
single-process run: ``training_batch_size`` stays the global batch.

The launch (``ddp_launch.py``), from the process that owns the run (``run.train``/``run.resume``): ``world``
rank processes with the environment torchrun gives, each dying with the launcher. Rank 0 is the run's only
writer (events, MLflow, checkpoints, outputs, ``run.json``: exactly what a single process writes); the other
ranks train their share and write nothing; the launcher relays rank 0's events to its callbacks, passes stop
requests on, and records a rank that dies as the run's failure.

Inside a rank (``RankContext``), for the torch engine:

* ``torch.distributed`` with NCCL on GPUs (rank r uses ``cuda:r``) or gloo on the CPU; the model is wrapped in
  ``DistributedDataParallel``; on GPUs BatchNorm layers become ``SyncBatchNorm`` (statistics over the global
  batch); gloo has no SyncBatchNorm, so on the CPU each rank normalises over its own share;
* data: the global batches are those a single process draws (same seeded order), each split across the ranks
  (``GlobalBatchShards``), so the learning rate and the schedule are unchanged;
* the training loss is reduced across ranks; evaluation runs on rank 0 over the whole validation set while the
  others wait, so the metrics are a single process's for the same weights; rank 0's decisions (a stop
  request, early stopping, the end) are shared with every rank, so they leave the loop together.

What differs from one process (the tolerance the tests state): the order of floating-point reductions, random
augmentations (each rank draws its own), and BatchNorm statistics on the CPU.

YOLO (``yolov5``) is trained by ultralytics' own trainer, which this version does not launch under DDP:
``distributed`` with a YOLO model is refused with a clear error (a YOLO sweep child gets one GPU).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

RANK_ENV = "AVML_DDP_RANK"  # set in rank processes: ``run`` then trains in place instead of launching
POLL_SECONDS = 0.2
END_GRACE_SECONDS = 10.0


# -- how many processes ----------------------------------------------------------------------------------
def visible_gpus() -> int:
    """CUDA devices this process may use (without creating a CUDA context)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def in_rank_process() -> bool:
    """Whether this process is a rank of a DDP run (started by ``start_ranks``)."""
    return os.environ.get(RANK_ENV) is not None


def world_size(config) -> int:
    """The number of rank processes ``config`` asks for (1: no DDP; always 1 inside a rank process).

    Raises
    ------
    ConfigError
        More GPU processes than visible GPUs, or a model whose trainer does not run under DDP here.
    """
    wanted = int(getattr(config, "distributed", 0) or 0)
    if wanted == 0 or in_rank_process():
        return 1
    device = str(config.device or "auto").lower()
    gpus = 0 if device == "cpu" else visible_gpus()
    if wanted == 1:
        world = gpus if gpus > 1 else 1
    elif device != "cpu" and wanted > gpus and not (gpus == 0 and device == "auto"):
        from jupyter_avml.errors import ConfigError

        raise ConfigError(f"distributed is {wanted} but {gpus} GPU(s) are visible; use distributed: 1 (every "
                          f"visible GPU) or device: cpu", field="distributed", value=wanted)
    else:
        world = wanted  # N GPUs, or N CPU processes (gloo) where there is no GPU
    if world > 1:
        _check_trainer(config, world)
    return world


def _check_trainer(config, world: int) -> None:
    """Only the torch engine's recipes train with DDP here (see the module docstring)."""
    from jupyter_avml.models.families import get_family

    if get_family(config.model_spec.family).trainer_kind == "runner":
        from jupyter_avml.errors import ConfigError

        raise ConfigError(f"distributed: {config.model_name} is trained by ultralytics' own trainer, whose DDP this "
                          f"version does not launch yet; train it on one GPU (distributed: 0)",
                          field="distributed", value=config.distributed)


# -- data: each global batch split across the ranks ------------------------------------------------------
class GlobalBatchShards:
    """A batch sampler: rank ``rank``'s share of each batch of ``batches`` (the global batches).

    Every rank iterates the same global batches (same seeded sampler) and keeps ``batch[rank::world]``. A
    global batch that cannot give each rank two images (the last, short one) is skipped on every rank: all
    ranks must take the same number of steps, and a BatchNorm layer in training mode needs two values.
    """

    def __init__(self, batches, rank: int, world: int):
        self.batches, self.rank, self.world = batches, rank, world

    def _usable(self, size: int) -> bool:
        return size >= 2 * self.world

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            batch = list(batch)
            if self._usable(len(batch)):
                yield batch[self.rank::self.world]

    def __len__(self) -> int:
        n, size = len(self.batches.sampler), self.batches.batch_size
        full, last = divmod(n, size)
        if self.batches.drop_last:
            last = 0
        return (full if self._usable(size) else 0) + (1 if last and self._usable(last) else 0)


def sharded_loader(dataset, batch_size: int, *, generator, drop_last: bool, rank: int, world: int, **kwargs):
    """The training ``DataLoader`` of one rank: the global batches a single process would draw with
    ``DataLoader(dataset, batch_size, shuffle=True, generator=generator, drop_last=drop_last)``, this rank's
    share of each (``GlobalBatchShards``). The generator is handed to the loader too, as the single-process
    loader does (it draws its base seed from it first), so the order is the same draw for draw."""
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler

    batches = BatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last)
    return DataLoader(dataset, batch_sampler=GlobalBatchShards(batches, rank, world), generator=generator, **kwargs)


# -- inside a rank ---------------------------------------------------------------------------------------
@dataclass
class RankContext:
    """This process's place in the group (see the module docstring)."""

    rank: int
    world: int
    device: Any  # torch.device

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @classmethod
    def join(cls, rank: int, world: int, device_setting: str, timeout_s: float = 7200.0) -> RankContext:
        """Join the process group (``MASTER_ADDR``/``MASTER_PORT`` from the environment)."""
        from datetime import timedelta

        import torch
        import torch.distributed as dist

        use_gpu = str(device_setting).lower() != "cpu" and torch.cuda.is_available()
        if use_gpu:
            torch.cuda.set_device(rank)
            device = torch.device("cuda", rank)
        else:
            device = torch.device("cpu")
        # A long timeout: the other ranks wait while rank 0 evaluates (a dead rank is the launcher's to see).
        dist.init_process_group("nccl" if use_gpu else "gloo", rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
        return cls(rank, world, device)

    def wrap(self, model):
        """``DistributedDataParallel`` around ``model`` (already on ``self.device``); SyncBatchNorm on GPUs."""
        import torch

        if self.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return torch.nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index])
        return torch.nn.parallel.DistributedDataParallel(model)

    @staticmethod
    def bare(model):
        """The module inside a ``DistributedDataParallel`` wrapper (what is saved and evaluated)."""
        import torch

        return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on one (a stop request seen by rank 0)."""
        import torch
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0], device=self._comm_device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def mean_loss(self, loss_sum: float, count: int) -> float:
        """The mean training loss over every rank's images."""
        import torch
        import torch.distributed as dist

        values = torch.tensor([float(loss_sum), float(count)], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(values)
        return float(values[0] / values[1]) if values[1] > 0 else float("nan")

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a decision: None, or ``(status, reason)``)."""
        import torch.distributed as dist

        box = [value if self.is_writer else None]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def _comm_device(self):
        import torch

        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def leave(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def rank_context() -> RankContext | None:
    """The context of this rank process (None outside one): set by ``rank_main`` for the trainer."""
    return _CONTEXT


_CONTEXT: RankContext | None = None


def join(rank: int, world: int, device_setting: str) -> RankContext:
    """Join the group as ``rank`` and make the context the trainer finds (``rank_context``)."""
    global _CONTEXT
    _CONTEXT = RankContext.join(rank, world, device_setting)
    return _CONTEXT
