"""Run a search on Ray Tune: resources per trial, a concurrency limit, retries, and resume after interruption.

The experiment lives at ``<workdir>/ray/<search>-<fingerprint>``. If that folder holds a run of the same search
(same fingerprint) whose process died, ``Tuner.restore`` continues it; a completed one, or one stopped by Ctrl-C
(its parent run is then KILLED), is replaced by a fresh experiment whose finished trials are answered from the
record.

Worker processes: a trial that runs in one process on CPUs runs in a warm worker Tune reuses (``reuse_actors``):
it keeps its imports (torch, transformers, timm, mlflow: most of a trivial trial's cost in a fresh process) and
``trial.scope.trial_scope`` gives each trial a clean state. A trial that holds GPUs, or drives Ray Train workers,
gets a fresh process each (``reuse_workers``).

Ctrl-C reaches the driver as ``KeyboardInterrupt`` (Tune's own SIGINT handler is turned off: it would end ``fit()``
as if the search had finished, and the caller could not tell the parent run was interrupted).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from eaglesearch.execution import ray_auth
from eaglesearch.execution.dispatch import Dispatcher
from eaglesearch.execution.searcher import StrategySearcher
from eaglesearch.execution.tune_entry import run_tune_trial
from eaglesearch.execution.worker_group import DRIVER_CPUS
from eaglesearch.spec import ResourcesSpec, SchedulerSpec

COMPLETE_MARKER = "eaglesearch_complete"
INTERRUPTED_MARKER = "eaglesearch_interrupted"
"""Written when Ctrl-C stopped the experiment: its parent run is KILLED, so the next invocation records under a new
parent and must not restore this experiment (its searcher would keep writing to the killed parent)."""


@dataclass(frozen=True)
class RayRunInfo:
    resumed: bool
    experiment_path: Path
    errors: int


THREAD_TIMEOUT_S = "60"
"""How long a reused worker waits for the previous trial's thread to end (Tune's default, 2 s, is short for a
stopped trial that frees a model; past it the next trial would fail instead of getting another worker)."""


def reuse_workers(resources: ResourcesSpec, workers: int) -> bool:
    """Warm workers for trials that run in one process on CPUs. GPU trials get a fresh process each: its exit frees
    all of the trial's CUDA memory (a leak included), and spawning costs little beside a GPU trial's minutes.
    Multi-worker trials (a Ray Train driver per trial) also start fresh."""
    return workers <= 1 and not resources.gpus_per_trial


def init_ray(address: str | None, tracking_uri: str) -> None:
    """Start (or join, with ``address``) Ray with the environment every trial worker needs; no-op when running."""
    import ray

    if ray.is_initialized():
        return
    env = {"OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false", "MLFLOW_TRACKING_URI": tracking_uri,
           "RAY_CHDIR_TO_TRIAL_DIR": "0", "TUNE_FUNCTION_THREAD_TIMEOUT_S": THREAD_TIMEOUT_S}
    kwargs: dict = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False,
                    "runtime_env": {"env_vars": env}}
    ray_auth.check_unchanged()
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
    ray_auth.remember()


def _trial_name(trial) -> str:
    request = trial.config.get("request", {})
    return f"r{request.get('round', 0)}-{request.get('key', trial.trial_id)}-{trial.trial_id}"


def make_scheduler(spec: SchedulerSpec, mode: str, max_t: int):
    """Ray Tune's ASHA over the trials' intermediate reports: time is final-stage steps, the metric the
    subset objective (``trial/intermediate.py``)."""
    from ray.tune.schedulers import ASHAScheduler

    from eaglesearch.trial.intermediate import OBJECTIVE, STEP

    grace = spec.grace_period or spec.eval_every
    if grace >= max_t:
        raise ValueError(f"scheduler.grace_period {grace} is not below max_t {max_t} (the final stage's steps): "
                         "nothing could be stopped; lower scheduler.grace_period or scheduler.eval_every")
    return ASHAScheduler(time_attr=STEP, metric=OBJECTIVE, mode=mode, max_t=max_t, grace_period=grace,
                         reduction_factor=spec.reduction_factor)


def run_with_ray(
    dispatcher: Dispatcher, resources: ResourcesSpec, tune_name: str, storage: Path, address: str | None = None,
    scheduler: object | None = None,
) -> RayRunInfo:
    """Run the dispatcher's search on Ray Tune; ``scheduler`` is a Tune trial scheduler (``make_scheduler``)."""
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    path = storage / tune_name
    try:
        return _run(dispatcher, resources, tune_name, storage, address, scheduler)
    except KeyboardInterrupt:
        _abandon(path)
        raise


def _abandon(path: Path) -> None:
    """After Ctrl-C (at any point: joining the cluster, restoring, running): stop the trials now, before the caller
    marks their runs KILLED, and make sure the next invocation does not restore this experiment."""
    import ray

    path.mkdir(parents=True, exist_ok=True)
    (path / INTERRUPTED_MARKER).write_text("interrupted\n")
    if ray.is_initialized():
        ray.shutdown()


def _run(dispatcher: Dispatcher, resources: ResourcesSpec, tune_name: str, storage: Path,
         address: str | None, scheduler: object | None) -> RayRunInfo:
    from ray import tune

    init_ray(address, dispatcher.context.tracking_uri)
    storage.mkdir(parents=True, exist_ok=True)
    path = storage / tune_name
    if dispatcher.context.workers > 1:
        # The Tune trial is only a driver: its TorchTrainer workers hold the CPUs/GPUs (Train V2 pattern).
        request: dict[str, float] = {"cpu": DRIVER_CPUS}
    else:
        request = {"cpu": resources.cpus_per_trial}
        if resources.gpus_per_trial:
            request["gpu"] = resources.gpus_per_trial
    trainable = tune.with_resources(run_tune_trial, request)

    resumed = False
    closed = (path / COMPLETE_MARKER).exists() or (path / INTERRUPTED_MARKER).exists()
    if path.exists() and not closed and tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
        resumed = True
    else:
        if path.exists():
            shutil.rmtree(path)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=StrategySearcher(dispatcher),
                scheduler=scheduler,  # type: ignore[arg-type]
                num_samples=-1,
                max_concurrent_trials=resources.max_concurrent_trials,
                reuse_actors=reuse_workers(resources, dispatcher.context.workers),
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=tune_name,
                storage_path=str(storage),
                failure_config=tune.FailureConfig(max_failures=resources.max_failures),
                verbose=0,
            ),
        )
    grid = tuner.fit()
    return RayRunInfo(resumed=resumed, experiment_path=path, errors=grid.num_errors)


def mark_complete(info: RayRunInfo) -> None:
    """Remember that this experiment ran to the end, so the next invocation starts fresh instead of restoring."""
    (info.experiment_path / COMPLETE_MARKER).write_text("done\n")
