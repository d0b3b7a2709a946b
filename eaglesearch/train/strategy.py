"""How the ranks of a trial share one training step: one strategy per ``resources.parallelism`` mode.

The loop (:mod:`eaglesearch.train.loop`) is the same for every mode; a strategy overrides only what differs, as
Prismatic's training strategies do: how the model is set up for the step (:meth:`~SingleProcess.setup`), how
gradients of micro-batches before the last skip synchronisation (:meth:`~SingleProcess.no_sync`), how gradients
are clipped, how the per-step losses are summed over ranks (once per ``log_every``, not every step), and how a
checkpoint is written.

* :class:`SingleProcess` (one process, CPU or one GPU): nothing to synchronise.
* :class:`DataParallel` (``ddp``): the model is wrapped in ``torch.nn.parallel.DistributedDataParallel`` for the
  stage. DDP all-reduces gradients in buckets *during* backward (overlapping communication with the rest of the
  backward pass), straight from the gradient buffers (``gradient_as_bucket_view``: no flat copy of all gradients).
  Its communication hook **sums** instead of averaging, because every rank's loss is already divided by the global
  answer-token count (:mod:`eaglesearch.train.distributed`), so the sum is exactly the 1-process gradient.
  ``find_unused_parameters`` is on: a step whose batch has no image leaves the experts without gradients, and those
  parameters must stay without one (AdamW then skips them as one process does).
* :class:`Sharded` (``fsdp``): the model was sharded by :func:`eaglesearch.train.fsdp.shard_model`; FSDP reduce-
  scatters the gradients itself (only after the last micro-batch), and clipping uses the global norm of the shards.

Every mode checkpoints with ``torch.distributed.checkpoint`` (:mod:`eaglesearch.train.checkpoint`): every rank
writes its own part, over a gloo group of its own so an asynchronous save never interleaves with the training's
collectives.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from eaglesearch.train import fsdp
from eaglesearch.train.checkpoint_writer import CheckpointWriter, async_by_default
from eaglesearch.train.distributed import WorldInfo

_CHECKPOINT_GROUPS: dict[int, dist.ProcessGroup] = {}


def checkpoint_group() -> dist.ProcessGroup | None:
    """A gloo group over every rank for checkpoint coordination (created once per default group; collective)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    world = dist.group.WORLD
    key = id(world)
    if key not in _CHECKPOINT_GROUPS:
        _CHECKPOINT_GROUPS[key] = dist.new_group(backend="gloo")
    return _CHECKPOINT_GROUPS[key]


def _sum_gradients(group, bucket):  # DDP checks real annotations (this module's are strings): none here
    """DDP communication hook: all-reduce a bucket as a plain sum (DDP's default divides by the world size)."""
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])  # type: ignore[union-attr]


class SingleProcess:
    """One process: the model trains as it is."""

    name = "none"

    def __init__(self, world: WorldInfo | None = None, device: torch.device | None = None) -> None:
        self.world = world or WorldInfo(0, 1)
        self.device = device or torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.world.is_main

    def setup(self, model: nn.Module) -> nn.Module:
        """The module the step runs forward and backward through (the model itself here)."""
        return model

    def teardown(self, wrapped: nn.Module) -> None:
        """Undo :meth:`setup` at the end of the stage (the next stage may train other parameters)."""

    def no_sync(self, wrapped: nn.Module, last: bool) -> contextlib.AbstractContextManager:
        """Context for one micro-batch's backward: gradients synchronise only in the ``last`` one."""
        return contextlib.nullcontext()

    def clip_grad_norm(self, params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def reduce_losses(self, values: torch.Tensor) -> torch.Tensor:
        """Per-step loss partials of this rank → the global losses (every rank gets the same)."""
        return values

    def agree(self, decision: bool) -> bool:
        """Rank 0's ``decision`` on every rank (e.g. "a checkpoint is due", which depends on each rank's clock)."""
        return decision

    def checkpoint_writer(self, path: Path) -> CheckpointWriter:
        return CheckpointWriter(path, is_main=self.is_main, asynchronous=async_by_default(self.device))


class DataParallel(SingleProcess):
    """``ddp``: a full model per rank, gradients summed by DistributedDataParallel during backward."""

    name = "ddp"

    def setup(self, model: nn.Module) -> nn.Module:
        ids = [self.device.index] if self.device.type == "cuda" and self.device.index is not None else None
        wrapped = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True,
                                          gradient_as_bucket_view=True, forward_sync_buffers=False)
        wrapped.register_comm_hook(None, _sum_gradients)
        return wrapped

    def teardown(self, wrapped: nn.Module) -> None:
        """Unhook the reducer from the parameters now: the next stage wraps the same module again, and a wrapper
        kept alive by a reference cycle would otherwise all-reduce its gradients a second time."""
        if isinstance(wrapped, DistributedDataParallel):
            wrapped.reducer._remove_autograd_hooks()

    def no_sync(self, wrapped: nn.Module, last: bool) -> contextlib.AbstractContextManager:
        if last or not isinstance(wrapped, DistributedDataParallel):
            return contextlib.nullcontext()
        return wrapped.no_sync()

    def reduce_losses(self, values: torch.Tensor) -> torch.Tensor:
        values = values.clone()
        dist.all_reduce(values)
        return values

    def agree(self, decision: bool) -> bool:
        flag = torch.tensor([int(decision)], dtype=torch.int64, device=self.device)
        dist.broadcast(flag, src=0)  # the training's group, from the training thread: ordered with its collectives
        return bool(flag.item())

    def checkpoint_writer(self, path: Path) -> CheckpointWriter:
        return CheckpointWriter(path, is_main=self.is_main, asynchronous=async_by_default(self.device),
                                process_group=checkpoint_group())


class Sharded(DataParallel):
    """``fsdp``: the model is already sharded; FSDP reduce-scatters gradients after the last micro-batch."""

    name = "fsdp"

    def setup(self, model: nn.Module) -> nn.Module:
        return model

    def teardown(self, wrapped: nn.Module) -> None:
        fsdp.set_gradient_sync(wrapped, True)

    def no_sync(self, wrapped: nn.Module, last: bool) -> contextlib.AbstractContextManager:
        fsdp.set_gradient_sync(wrapped, last)
        return contextlib.nullcontext()

    def clip_grad_norm(self, params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
        return fsdp.clip_grad_norm_(params, max_norm)


def strategy_for(model: nn.Module, world: WorldInfo | None, device: torch.device) -> SingleProcess:
    """The strategy of a model and world: ``fsdp`` for a sharded model, ``ddp`` for several ranks, else one process."""
    if fsdp.is_sharded(model):
        return Sharded(world or WorldInfo.current(), device)
    if world is not None and world.world_size > 1:
        return DataParallel(world, device)
    return SingleProcess(world, device)
