"""The training loop of one stage: a fixed number of optimizer steps, deterministic per seed.

What trains is decided before the call (``requires_grad``, see :mod:`eaglesearch.train.trainable`); the stage
spec gives the optimizer (:mod:`~eaglesearch.train.optim`), the schedule (:mod:`~eaglesearch.train.schedule`),
clipping, the length and the micro-batch size (gradient accumulation, see :mod:`~eaglesearch.train.distributed`).

Kept deliberately lean (``benchmarks/overhead.py`` holds it to within 10% of a hand-written PyTorch loop): in one
process without accumulation the only extra work per step is reading the loss as a float, calling ``on_log`` every
``log_every`` steps and, when a checkpoint folder is given, writing a checkpoint every ``checkpoint_every`` steps.

With ``checkpoint_dir`` a stage survives its process: a rerun restores ``checkpoint_dir/last.pt`` (weights,
optimizer, scheduler, RNG states, data position, losses) and continues bit-identically to an uninterrupted run; a
damaged ``last.pt`` is skipped with a warning for the checkpoint before it (``prev.pt``) or the stage start.

A loss that stops being finite (NaN or inf) ends the stage at once with a ``FloatingPointError`` naming the step,
so the trial is recorded FAILED with the reason instead of training on garbage.

With ``stop_at`` (a multi-fidelity rung, see ``eaglesearch/search/halving.py``) the stage stops after that many
steps of the full stage: the LR schedule is still the full stage's, and the checkpoint written at the stop is
exactly the one an uninterrupted full run would write there, so a later call with a larger ``stop_at`` (or none)
continues from it as if the stage had never stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from eaglesearch.data.loader import BatchStream, Position, batches
from eaglesearch.spec.train import STAGE_NON_SEMANTIC, StageSpec, semantic_stage
from eaglesearch.train import distributed, fsdp
from eaglesearch.train.checkpoint import (
    CHECKPOINT_NAME,
    Checkpoint,
    load_latest,
    restore_checkpoint,
    save_checkpoint,
)
from eaglesearch.train.optim import build_optimizer
from eaglesearch.train.schedule import lr_multiplier

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
            stats: TrainStats, stop: int) -> int:
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
    restore_checkpoint(checkpoint, model, optimizer, scheduler)
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
) -> TrainStats:
    """Run the stage's ``spec.steps`` optimizer steps (warmup + schedule, gradient clipping) on the parameters
    that have ``requires_grad``. Returns per-step losses. ``spec.steps`` must be resolved: for a stage given in
    epochs pass ``stage.with_steps(stage.total_steps(len(dataset)))``.

    With ``checkpoint_dir``: resume from ``checkpoint_dir/last.pt`` when it exists (``on_log`` is first called for
    the restored steps, so a caller's log equals an uninterrupted run's), write it every ``spec.checkpoint_every``
    steps and at the end. ``data`` should be a :class:`BatchStream` (positioned directly); any other iterator is
    advanced past the restored steps. The caller removes the folder once it no longer needs it.

    With ``world`` (data-parallel, see :mod:`eaglesearch.train.distributed`): ``data`` yields the *global* batch on
    every rank, or only the rank's rows of it (a ``BatchStream`` with ``shard``: each rank decodes only its share),
    each rank trains on its contiguous rows and gradients are summed across ranks so losses and weights
    equal a 1-process run's; only rank 0 writes checkpoints (all ranks read them on resume, so ``checkpoint_dir``
    must be shared). A model sharded with FSDP (:func:`eaglesearch.train.fsdp.shard_model`) trains the same way:
    its gradients are summed by FSDP's reduce-scatter, clipped by their global norm, and every rank joins the
    checkpoint (the full state is gathered to rank 0, which writes it).

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
    """
    if spec.steps is None:
        raise ValueError(f"stage '{spec.name}' has no resolved step count (epochs={spec.epochs}); pass "
                         "stage.with_steps(stage.total_steps(len(dataset))) to train()")
    total_steps, warmup, kind = spec.steps, round(spec.warmup_ratio * spec.steps), spec.schedule
    stop = spec.steps if stop_at is None else stop_at
    if not 1 <= stop <= spec.steps:
        raise ValueError(f"stage '{spec.name}': stop_at={stop_at} is outside 1..{spec.steps} (the stage's steps)")
    optimizer = build_optimizer(model, spec)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, total_steps, warmup, kind))
    # The plain step: one CPU process, no accumulation. On CUDA the accumulating step also moves batches to the
    # device and runs them under bf16 autocast.
    plain = world is None and (spec.micro_batch_size is None or spec.micro_batch_size >= spec.batch_size) and \
        not distributed.on_cuda(model)
    params = [p for p in model.parameters() if p.requires_grad]
    sharded = fsdp.is_sharded(model)
    stats = TrainStats(steps=stop)
    first, every, path = 0, 0, None
    if checkpoint_dir is not None:
        path = Path(checkpoint_dir) / CHECKPOINT_NAME
        every = spec.checkpoint_every or spec.steps
        first = _resume(path, model, optimizer, scheduler, data, spec, stats, stop)
        if on_log is not None:
            for step, value in enumerate(stats.losses):
                if step % spec.log_every == 0 or step == spec.steps - 1:
                    on_log(step, value)
    model.train()
    wall_before = stats.wall_s
    start = time.perf_counter()
    for step in range(first, stop):
        batch = next(data)
        if plain:
            out = model(batch["images"], batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
            loss = shown = out.loss
            if not torch.isfinite(shown):
                raise FloatingPointError(f"loss became {shown.item()} at step {step}; lower lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        else:
            optimizer.zero_grad(set_to_none=True)
            shown = distributed.accumulate_gradients(model, batch, world, spec.micro_batch_size)
            if not torch.isfinite(shown):
                raise FloatingPointError(f"loss became {shown.item()} at step {step}; lower lr or check the data")
            if world is not None and not sharded:
                distributed.all_reduce_gradients(params, world)
        if sharded:
            fsdp.clip_grad_norm_(params, spec.grad_clip)
        else:
            torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
        optimizer.step()
        scheduler.step()
        value = shown.item()
        stats.losses.append(value)
        stats.samples += distributed.global_rows(batch)
        main = world is None or world.is_main
        if every and ((step + 1) % every == 0 or step == stop - 1) and (main or sharded):
            stats.wall_s = wall_before + time.perf_counter() - start
            save_checkpoint(path, step=step + 1, model=model, optimizer=optimizer,  # type: ignore[arg-type]
                            scheduler=scheduler, data_state=data.position if isinstance(data, BatchStream) else None,
                            losses=stats.losses, is_main=main,
                            meta={"train": _computed(spec), "samples": stats.samples, "wall_s": stats.wall_s})
        if on_log is not None and (step % spec.log_every == 0 or step in (stop - 1, spec.steps - 1)):
            on_log(step, value)
        if on_step is not None:
            on_step(step + 1)
    stats.wall_s = wall_before + time.perf_counter() - start
    return stats
