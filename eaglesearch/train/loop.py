"""The training loop of one stage: a fixed number of optimizer steps, deterministic per seed.

What trains is decided before the call (``requires_grad``, see :mod:`eaglesearch.train.trainable`); the stage
spec gives the optimizer (:mod:`~eaglesearch.train.optim`), the schedule (:mod:`~eaglesearch.train.schedule`),
clipping, the length and the micro-batch size (gradient accumulation, see :mod:`~eaglesearch.train.distributed`).
How the ranks share a step (one process, DDP, FSDP) is the parallelism strategy's
(:mod:`~eaglesearch.train.strategy`); the loop is the same for all of them.

Kept deliberately lean (``benchmarks/overhead.py`` holds it to within 10% of a hand-written PyTorch loop). The step
never waits for the device: losses stay on it and are read (and summed over ranks) in one batch every ``log_every``
steps, where ``on_log`` is called; the non-finite check happens there too.

With ``checkpoint_dir`` a stage survives its process: a rerun restores ``checkpoint_dir/last``
(:mod:`~eaglesearch.train.checkpoint`: weights, optimizer, scheduler, RNG states, data position, losses) and
continues bit-identically to an uninterrupted run; a damaged ``last`` is skipped with a warning for the checkpoint
before it (``prev``) or the stage start. Checkpoints are written every ``checkpoint_every_s`` seconds (decided at a
log step, by rank 0's clock) or, when set, every ``checkpoint_every`` steps, and at the stop.

A loss that stops being finite (NaN or inf) ends the stage at the next log step with a ``FloatingPointError``
naming the step, so the trial is recorded FAILED with the reason instead of training on garbage.

With ``stop_at`` (a multi-fidelity rung, see ``eaglesearch/search/halving.py``) the stage stops after that many
steps of the full stage: the LR schedule is still the full stage's, and the checkpoint written at the stop is
exactly the one an uninterrupted full run would write there, so a later call with a larger ``stop_at`` (or none)
continues from it as if the stage had never stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from eaglesearch.data.loader import BatchStream, Position, batches
from eaglesearch.spec.train import STAGE_NON_SEMANTIC, StageSpec, semantic_stage
from eaglesearch.train import distributed
from eaglesearch.train.checkpoint import CHECKPOINT_NAME, Checkpoint, load_latest, restore_checkpoint
from eaglesearch.train.optim import build_optimizer
from eaglesearch.train.schedule import lr_multiplier
from eaglesearch.train.strategy import SingleProcess, checkpoint_group, strategy_for

StepLogger = Callable[[int, float], None]
__all__ = ["BatchStream", "Position", "TrainStats", "batches", "train"]  # the stream lives in data/loader.py


@dataclass
class TrainStats:
    steps: int
    losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    samples: int = 0
    resumed_from: int = 0
    """Steps restored from a checkpoint (0: trained from scratch). ``losses``, ``samples`` and ``wall_s`` cover the
    whole stage, the interrupted processes included."""

    @property
    def loss_first(self) -> float:
        return self.losses[0]

    @property
    def loss_final(self) -> float:
        """Mean of the last 10% of step losses (at least one): less noisy than the very last batch."""
        tail = max(1, len(self.losses) // 10)
        return sum(self.losses[-tail:]) / tail

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall_s if self.wall_s > 0 else 0.0


def _computed(spec: StageSpec) -> dict:
    """The stage settings a checkpoint is valid for (logging and checkpoint cadence may change between runs)."""
    return semantic_stage(spec, exclude=STAGE_NON_SEMANTIC)


def _resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler, data: Iterator, spec: StageSpec,
            stats: TrainStats, stop: int, strategy: SingleProcess) -> int:
    """Restore the newest usable checkpoint at ``path`` (or the one before it, when ``path`` is damaged); returns
    the number of steps already done (0 without a usable checkpoint). A checkpoint past ``stop`` is an error."""

    def usable(checkpoint: Checkpoint) -> None:
        saved = checkpoint.meta.get("train")
        if saved != _computed(spec):
            changed = sorted(k for k in {*(saved or {}), *_computed(spec)}
                             if (saved or {}).get(k) != _computed(spec).get(k))
            raise checkpoint.fail(f"was written with other training settings ({', '.join(changed)})")
        assert spec.steps is not None
        if not 0 < checkpoint.step <= spec.steps or len(checkpoint.losses) != checkpoint.step:
            raise checkpoint.corrupt(f"is inconsistent (step {checkpoint.step}, {len(checkpoint.losses)} losses)")
        if checkpoint.step > stop:
            raise checkpoint.fail(f"is at step {checkpoint.step}, past this run's stop at step {stop} (a rung "
                                  "cannot be evaluated from a later checkpoint)")

    checkpoint = load_latest(path, usable)
    if checkpoint is None:
        return 0
    restore_checkpoint(checkpoint, model, optimizer, scheduler,
                       process_group=checkpoint_group() if strategy.world.world_size > 1 else None)
    if isinstance(data, BatchStream) and checkpoint.data_state is not None:
        data.seek(checkpoint.data_state)
    else:  # a plain iterator: replay it (deterministic streams only)
        for _ in range(checkpoint.step):
            next(data)
    stats.losses = list(checkpoint.losses)
    stats.samples = int(checkpoint.meta.get("samples", 0))
    stats.wall_s = float(checkpoint.meta.get("wall_s", 0.0))
    stats.resumed_from = checkpoint.step
    return checkpoint.step


def train(
    model: nn.Module,
    data: Iterator[dict[str, torch.Tensor]],
    spec: StageSpec,
    on_log: StepLogger | None = None,
    checkpoint_dir: Path | None = None,
    world: distributed.WorldInfo | None = None,
    stop_at: int | None = None,
    on_step: Callable[[int], None] | None = None,
    final_checkpoint: bool = True,
) -> TrainStats:
    """Run the stage's ``spec.steps`` optimizer steps (warmup + schedule, gradient clipping) on the parameters
    that have ``requires_grad``. Returns per-step losses. ``spec.steps`` must be resolved: for a stage given in
    epochs pass ``stage.with_steps(stage.total_steps(len(dataset)))``.

    With ``checkpoint_dir``: resume from ``checkpoint_dir/last`` when it exists (``on_log`` is first called for
    the restored steps, so a caller's log equals an uninterrupted run's), write it every ``spec.checkpoint_every_s``
    seconds (or ``spec.checkpoint_every`` steps) and at the end. ``data`` should be a :class:`BatchStream`
    (positioned directly); any other iterator is advanced past the restored steps. The caller removes the folder
    (:func:`~eaglesearch.train.checkpoint.remove_checkpoints`) once it no longer needs it.

    With ``world`` (data-parallel, see :mod:`eaglesearch.train.distributed`): ``data`` yields the *global* batch on
    every rank, or only the rank's rows of it (a ``BatchStream`` with ``shard``: each rank decodes only its share),
    each rank trains on its contiguous rows and gradients are summed across ranks (DDP, see
    :mod:`eaglesearch.train.strategy`) so losses and weights equal a 1-process run's. A model sharded with FSDP
    (:func:`eaglesearch.train.fsdp.shard_model`) trains the same way: its gradients are summed by FSDP's
    reduce-scatter and clipped by their global norm. Every rank joins a checkpoint and writes its own part of it,
    so ``checkpoint_dir`` must be shared.

    ``data`` always yields the global batch (``spec.batch_size`` rows). With ``spec.micro_batch_size`` smaller than
    a worker's share, the share is run in micro-batches whose gradients accumulate before the optimizer step; loss
    and update equal the full-batch step's up to float rounding. ``world=None`` without accumulation is the plain
    single-process loop.

    With ``stop_at`` (1 <= stop_at <= spec.steps) only steps ``[0, stop_at)`` run, on the schedule of all
    ``spec.steps``; with ``checkpoint_dir`` the checkpoint at ``stop_at`` is always written, so a later call with a
    larger ``stop_at`` or none resumes there (a checkpoint past ``stop_at`` is an error). ``stats.steps`` is the
    step reached.

    ``on_step(done)`` is called after every optimizer step (and its checkpoint) with the steps done so far: where a
    scheduler's intermediate evaluation hooks in. It must leave the model, its mode and the RNG as it found them.

    ``final_checkpoint=False`` skips the checkpoint at the end of a full stage (a ``stop_at`` before the end is
    always checkpointed): for a caller that saves the stage's result itself right after and then deletes the
    checkpoints (``StagePipeline``'s ``done.pt``), it would be written only to be removed.
    """
    if spec.steps is None:
        raise ValueError(f"stage '{spec.name}' has no resolved step count (epochs={spec.epochs}); pass "
                         "stage.with_steps(stage.total_steps(len(dataset))) to train()")
    total_steps, warmup, kind = spec.steps, round(spec.warmup_ratio * spec.steps), spec.schedule
    stop = spec.steps if stop_at is None else stop_at
    if not 1 <= stop <= spec.steps:
        raise ValueError(f"stage '{spec.name}': stop_at={stop_at} is outside 1..{spec.steps} (the stage's steps)")
    device = next(model.parameters()).device
    strategy = strategy_for(model, world, device)
    optimizer = build_optimizer(model, spec)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, total_steps, warmup, kind))
    # The plain step: one CPU process, no accumulation, the model's own loss. Otherwise the accumulating step
    # (summed token loss over the global count; on CUDA also batches to the device and bf16 autocast).
    plain = world is None and (spec.micro_batch_size is None or spec.micro_batch_size >= spec.batch_size) and \
        device.type == "cpu"
    params = [p for p in model.parameters() if p.requires_grad]
    stats = TrainStats(steps=stop)
    first, path, writer = 0, None, None
    if checkpoint_dir is not None:
        path = Path(checkpoint_dir) / CHECKPOINT_NAME
        first = _resume(path, model, optimizer, scheduler, data, spec, stats, stop, strategy)
        if on_log is not None:
            for step, value in enumerate(stats.losses):
                if step % spec.log_every == 0 or step == spec.steps - 1:
                    on_log(step, value)
        writer = strategy.checkpoint_writer(path)
    wrapped = strategy.setup(model)
    model.train()
    wall_before = stats.wall_s
    start = last_save = time.perf_counter()
    pending: list[torch.Tensor] = []  # this rank's losses of the steps not yet read (they stay on the device)

    def read_losses() -> None:
        """Sum the pending losses over ranks and read them: the step's one host synchronisation."""
        if not pending:
            return
        values = strategy.reduce_losses(torch.stack(pending)).tolist()
        done = len(stats.losses)
        pending.clear()
        for offset, value in enumerate(values):
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} at step {done + offset}; lower lr or check the data")
        stats.losses.extend(values)

    try:
        for step in range(first, stop):
            batch = next(data)
            optimizer.zero_grad(set_to_none=True)
            if plain:
                out = wrapped(batch["images"], batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
                out.loss.backward()
                pending.append(out.loss.detach())
            else:
                pending.append(distributed.accumulate_gradients(
                    wrapped, batch, world, spec.micro_batch_size, reduce=False,
                    no_sync=lambda last: strategy.no_sync(wrapped, last)))
            strategy.clip_grad_norm(params, spec.grad_clip)
            optimizer.step()
            scheduler.step()
            stats.samples += distributed.global_rows(batch)
            logs = step % spec.log_every == 0 or step in (stop - 1, spec.steps - 1)
            if logs:
                read_losses()
            if writer is not None and _checkpoint_due(spec, step, stop, logs, last_save, strategy, final_checkpoint):
                read_losses()
                stats.wall_s = wall_before + time.perf_counter() - start
                writer.save(step=step + 1, model=model, optimizer=optimizer, scheduler=scheduler,
                            data_state=data.position if isinstance(data, BatchStream) else None,
                            losses=stats.losses, meta={"train": _computed(spec), "samples": stats.samples,
                                                       "wall_s": stats.wall_s})
                last_save = time.perf_counter()
            if logs and on_log is not None:
                on_log(step, stats.losses[step])
            if on_step is not None:
                on_step(step + 1)
        read_losses()
    finally:
        if writer is not None:
            writer.close()  # a save in flight lands before the stage returns (or its error propagates)
        strategy.teardown(wrapped)
    stats.wall_s = wall_before + time.perf_counter() - start
    return stats


def _checkpoint_due(spec: StageSpec, step: int, stop: int, logs: bool, last_save: float,
                    strategy: SingleProcess, final: bool) -> bool:
    """Whether a checkpoint is written after 0-based ``step``: at the stop (at the stage's end only when ``final``);
    every ``checkpoint_every`` steps when it is set (0: only at the stop); else at a log step once
    ``checkpoint_every_s`` have passed on rank 0's clock (every rank must agree: saving is collective)."""
    if step == stop - 1:
        return final or stop < spec.steps
    if spec.checkpoint_every is not None:
        return spec.checkpoint_every > 0 and (step + 1) % spec.checkpoint_every == 0
    if not logs:
        return False
    return strategy.agree(time.perf_counter() - last_save >= spec.checkpoint_every_s)
