"""Data-parallel training of one stage over several processes (one per CPU worker or GPU), and gradient
accumulation.

Every rank follows the same seeded :class:`~eaglesearch.data.loader.BatchStream` and trains on the contiguous rows
``rank*k:(rank+1)*k`` of each global batch (``k = batch_size / world_size``): a stream built with ``shard`` reads
and decodes only those rows (a :class:`~eaglesearch.data.loader.RowShard` batch); a plain one yields the collated
global batch, which :func:`shard_batch` slices. Gradients are summed over ranks by the stage's parallelism strategy
(:mod:`eaglesearch.train.strategy`: DistributedDataParallel's buckets during backward under ``ddp``, FSDP's
reduce-scatter under ``fsdp``).

Exact loss. The causal-LM loss of one process is the mean over the *answer tokens of the whole batch*. The mean
of per-rank means differs from it when shares hold different numbers of answer tokens, so each rank computes its
**summed** token loss and divides it by the **global** answer-token count (known to every rank, because every rank
holds the collated global batch before slicing it; a rank holding only its rows gets it with one scalar
``all_reduce`` of the per-rank counts, :func:`global_answer_tokens`). Summing those gradients over ranks gives
exactly the gradient of the 1-process mean loss; the reported loss is the sum of the ranks' parts, reduced once per
logging interval (not every step). Up to float rounding, a k-worker run therefore reproduces the 1-worker loss curve
and parameters.

Gradient accumulation (a stage's ``micro_batch_size``) is the same arithmetic one level down: a rank's share is cut
into micro-batches, each backpropagates its summed loss over the same global count, and the gradients add up in
``.grad``; only the last micro-batch's backward synchronises them (:func:`accumulate_gradients`). In one process
too it equals the full-batch step.

No host synchronisation. The token count comes from the batch while it is still on the host; the loss stays on
the device; batches are copied from pinned memory without blocking; the model is told which rows carry an image
from that host copy too. The step itself never waits for the GPU.

Device policy (GPU only, not testable on CPU): when the model sits on CUDA, the forward pass runs under
``torch.autocast("cuda", dtype=torch.bfloat16)`` and :func:`prepare_model` turns on activation checkpointing of
the LM's decoder layers and of every expert's blocks. Both are decided by the device, not by the stage spec; on CPU
nothing changes.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from eaglesearch.data.loader import SHARD, RowShard
from eaglesearch.train import fsdp

IGNORE_INDEX = -100


@dataclass(frozen=True)
class WorldInfo:
    """This process's place among the data-parallel workers of one trial."""

    rank: int
    world_size: int

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"invalid rank {self.rank} for world size {self.world_size}")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> WorldInfo:
        """The initialized default process group's rank and size (1 process when none is initialized)."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls(0, 1)


# ------------------------------------------------------------------------------------------- process group

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_process_group(rank: int, world_size: int, *, addr: str = "127.0.0.1", port: int | None = None,
                       backend: str | None = None) -> WorldInfo:
    """Join the default process group (gloo on CPU, nccl on GPU) by TCP rendezvous at ``addr:port``."""
    world = WorldInfo(rank, world_size)
    port = port if port is not None else int(os.environ.get("MASTER_PORT", "0")) or None
    if port is None:
        raise ValueError("init_process_group needs a port shared by all ranks (pass port= or set MASTER_PORT)")
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}", rank=rank, world_size=world_size)
    return world


def destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------ batches

def shard_batch(batch: dict[str, torch.Tensor], world: WorldInfo) -> dict[str, torch.Tensor]:
    """The rank's contiguous rows ``rank*k:(rank+1)*k`` of a collated global batch (every tensor sliced on dim 0);
    a batch the loader already cut to this rank's rows (a :class:`RowShard`) as it is."""
    rows = {int(v.shape[0]) for v in batch.values() if isinstance(v, torch.Tensor)}
    if len(rows) != 1:
        raise ValueError(f"batch tensors disagree on the number of rows: {sorted(rows)}")
    shard = batch.get(SHARD)
    if isinstance(shard, RowShard):
        if (shard.rank, shard.world_size) != (world.rank, world.world_size):
            raise ValueError(f"the batch holds rank {shard.rank}'s rows of {shard.world_size} workers, but this is "
                             f"rank {world.rank} of {world.world_size}; build the stream with this rank's shard")
        return batch
    size = rows.pop()
    if size % world.world_size:
        raise ValueError(f"the global batch of {size} rows does not divide by the {world.world_size} workers; "
                         f"set train.batch_size to a multiple of the worker count")
    k = size // world.world_size
    lo, hi = world.rank * k, (world.rank + 1) * k
    return {name: value[lo:hi] if isinstance(value, torch.Tensor) else value for name, value in batch.items()}


def answer_tokens(labels: torch.Tensor) -> int:
    """Tokens the causal-LM loss averages over: positions whose *next* label is not ignored."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def global_rows(batch: dict[str, torch.Tensor]) -> int:
    """Rows of the global batch ``batch`` belongs to (its own rows, unless it is one rank's share)."""
    shard = batch.get(SHARD)
    return shard.global_rows if isinstance(shard, RowShard) else int(batch["input_ids"].shape[0])


def global_answer_tokens(batch: dict[str, torch.Tensor], world: WorldInfo, device: torch.device) -> int:
    """Answer tokens of the whole global batch: counted in ``batch`` when it is the global batch, summed over the
    ranks (one scalar ``all_reduce``) when it is this rank's share."""
    if not isinstance(batch.get(SHARD), RowShard) or world.world_size == 1:
        return answer_tokens(batch["labels"])
    count = torch.tensor(answer_tokens(batch["labels"]), dtype=torch.int64, device=device)
    dist.all_reduce(count)
    return int(count)


def summed_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross-entropies over answer tokens (float32), as HF's causal-LM loss before its mean."""
    shift_logits = logits[:, :-1, :].float().reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1).to(shift_logits.device)
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum")


# ------------------------------------------------------------------------------------------------- device

def on_cuda(model: nn.Module) -> bool:
    param = next(model.parameters(), None)
    return param is not None and param.is_cuda


def autocast_for(model: nn.Module) -> contextlib.AbstractContextManager:
    """bf16 autocast when the model is on CUDA; a no-op context on CPU."""
    if torch.cuda.is_available() and on_cuda(model):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module) -> nn.Module:
    """Device-decided memory savers on GPU (nothing on CPU): activation checkpointing of the LM's decoder layers
    (transformers' own) and of every expert's blocks (each block recomputes its activations in backward, so only
    its input is kept: ``model/memory.py`` plans with this)."""
    if not (torch.cuda.is_available() and on_cuda(model)):
        return model
    lm = getattr(model, "lm", None)
    if hasattr(lm, "gradient_checkpointing_enable"):
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})  # type: ignore
        if hasattr(lm, "config"):
            lm.config.use_cache = False  # type: ignore[union-attr]
    checkpoint_expert_blocks(model)
    return model


def checkpoint_expert_blocks(model: nn.Module) -> list[nn.Module]:
    """Make every expert block (what ``freeze`` counts: ViT blocks, ConvNeXt stages) recompute its activations in
    backward (the composable, non-reentrant ``checkpoint``, which keeps module names and state-dict keys); returns
    the blocks. Frozen blocks without a gradient-carrying input keep nothing either way."""
    from torch.distributed._composable import checkpoint

    blocks: list[nn.Module] = []
    for expert in getattr(model, "experts", {}).values():
        blocks.extend(expert.freezable_blocks())
    for block in blocks:
        checkpoint(block)
    return blocks


def broadcast_parameters(model: nn.Module, src: int = 0) -> None:
    """Make every rank start from rank ``src``'s weights (a guard; seeded builds are already identical)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src)


# ---------------------------------------------------------------------------------------------- the step

def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch on ``device``; to CUDA from pinned host memory, so ``non_blocking`` really does not block."""
    pin = device.type == "cuda"
    return {k: (v.pin_memory() if pin and not v.is_pinned() else v).to(device, non_blocking=True)
            if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def micro_batches(share: dict[str, torch.Tensor], micro_batch_size: int | None) -> list[dict[str, torch.Tensor]]:
    """A rank's ``share`` of the global batch cut into consecutive micro-batches of ``micro_batch_size`` rows
    (one micro-batch, the whole share, when it is ``None`` or not smaller than the share)."""
    rows = int(share["labels"].shape[0])
    if micro_batch_size is None or micro_batch_size >= rows:
        return [share]
    if rows % micro_batch_size:
        divisors = [d for d in range(1, rows + 1) if rows % d == 0]
        raise ValueError(f"each worker's share of the global batch is {rows} rows, which does not split into "
                         f"micro-batches of {micro_batch_size}; set train micro_batch_size to one of "
                         f"{', '.join(map(str, divisors))} (or adjust batch_size)")
    return [{name: value[lo:lo + micro_batch_size] if isinstance(value, torch.Tensor) else value
             for name, value in share.items()} for lo in range(0, rows, micro_batch_size)]


def accumulate_gradients(model: nn.Module, batch: dict[str, torch.Tensor], world: WorldInfo | None = None,
                         micro_batch_size: int | None = None, *, reduce: bool = True,
                         no_sync: Callable[[bool], contextlib.AbstractContextManager] | None = None) -> torch.Tensor:
    """Backpropagate this rank's share of a collated global ``batch`` (or of the share itself, from a sharded
    stream), one micro-batch at a time; returns the loss
    (no grad, on the model's device): with ``reduce`` the global mean loss (summed over ranks: a collective), without
    it this rank's part of it (the loop sums the parts of many steps at once, at log time).

    Each micro-batch backpropagates its summed token loss over the *global* answer-token count, so the gradients
    accumulated in ``.grad`` (zero them first), summed over ranks, are exactly the 1-process full-batch gradient,
    whatever the micro-batch size. ``no_sync(last)`` wraps each micro-batch's forward and backward (the strategy's:
    DDP's ``no_sync`` before the last); by default an FSDP model reduce-scatters after the last one only.
    ``world=None`` is one process.
    """
    world = world or WorldInfo(0, 1)
    device = next(model.parameters()).device
    total = global_answer_tokens(batch, world, device)
    value = torch.zeros((), device=device)
    micros = micro_batches(shard_batch(batch, world), micro_batch_size)
    for i, micro in enumerate(micros):
        last = i == len(micros) - 1
        if no_sync is None:
            fsdp.set_gradient_sync(model, last)  # FSDP: reduce-scatter once, after the last one
        host_ids = micro["input_ids"]
        on_device = _to(micro, device)
        extra = {"host_ids": host_ids} if device.type != "cpu" else {}
        with no_sync(last) if no_sync is not None else contextlib.nullcontext():
            with autocast_for(model):
                out = model(on_device["images"], on_device["input_ids"], on_device["attention_mask"], **extra)
            loss = summed_lm_loss(out.logits, on_device["labels"]) / max(total, 1)
            loss.backward()
        value += loss.detach()
    if reduce and world.world_size > 1:
        dist.all_reduce(value)
    if total == 0:  # no answer token anywhere: HF's mean would be nan; keep the same signal
        value = value * float("nan")
    return value


def training_device() -> torch.device:
    """The device a trial trains on when the caller names none: the current CUDA device when there is one (a
    multi-worker launcher, which knows each worker's GPU, passes that device instead), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
