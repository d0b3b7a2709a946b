"""How a trial's data-parallel worker group is sized: how many workers, how they hold the model (DDP or FSDP), and
the CPUs each reserves. Light on purpose (no torch): the controller and the dispatcher decide these for every trial,
and only the trial process that drives the group imports ``multi_worker.py``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from eaglesearch.spec import TrialSpec
    from eaglesearch.spec.search_space import ResourcesSpec

WORKERS_ENV = "EAGLESEARCH_WORKERS_PER_TRIAL"
PARALLELISM_ENV = "EAGLESEARCH_PARALLELISM"
Parallelism = Literal["ddp", "fsdp"]

DRIVER_CPUS = 0.01
"""What the Tune trial that drives a multi-worker trial reserves (Ray cannot schedule a trial with no resources)."""


def cpus_per_worker(resources: ResourcesSpec, workers: int) -> float:
    """A multi-worker trial's ``cpus_per_trial`` shared by its workers, less the driving Tune trial's reservation,
    so the whole trial fits in ``cpus_per_trial``: one CPU per worker would never place two workers on a 2-CPU
    machine beside the driver's 0.01 (Ray Train waits for them forever)."""
    return max(DRIVER_CPUS, (resources.cpus_per_trial - DRIVER_CPUS) / workers)


def workers_per_trial(resources: ResourcesSpec | None = None) -> int:
    """Data-parallel workers for one trial: ``$EAGLESEARCH_WORKERS_PER_TRIAL``, else ``gpus_per_trial`` (if > 1)."""
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        workers = int(env)
        if workers < 1:
            raise ValueError(f"{WORKERS_ENV} must be a positive integer, got {env!r}")
        return workers
    if resources is not None and resources.gpus_per_trial > 1:
        if resources.gpus_per_trial != int(resources.gpus_per_trial):
            raise ValueError(f"gpus_per_trial={resources.gpus_per_trial} above 1 must be whole (one GPU per worker)")
        return int(resources.gpus_per_trial)
    return 1


def parallelism_for(resources: ResourcesSpec | None = None, trial: TrialSpec | None = None) -> Parallelism:
    """``ddp`` or ``fsdp`` for a multi-worker trial: ``$EAGLESEARCH_PARALLELISM`` (CPU testing), else
    ``resources.parallelism``; ``auto`` asks the trial's memory plan (ddp when it fits the GPUs, else fsdp:
    :func:`eaglesearch.trial.memory.trial_memory`), and is ``ddp`` without a trial or a multi-GPU trial."""
    env = os.environ.get(PARALLELISM_ENV, "").strip().lower()
    if env:
        if env not in ("ddp", "fsdp"):
            raise ValueError(f"{PARALLELISM_ENV} must be ddp or fsdp, got {env!r}")
        return env  # type: ignore[return-value]
    chosen = getattr(resources, "parallelism", "auto") if resources is not None else "auto"
    if chosen == "auto" and trial is not None and resources is not None and workers_per_trial(resources) > 1:
        from eaglesearch.trial.memory import available_gpu_memory_gb, trial_memory

        return trial_memory(trial, resources, available_gpu_memory_gb(resources)).parallelism
    return "fsdp" if chosen == "fsdp" else "ddp"
