"""Run a search on Ray Tune: resources per trial, a concurrency limit, retries, and resume after interruption.

The experiment lives at ``<workdir>/ray/<search>-<fingerprint>``. If that folder holds an interrupted run of the
same search (same fingerprint), ``Tuner.restore`` continues it; a completed one is replaced by a fresh experiment
whose trials are all answered from the record.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from eaglesearch.execution.dispatch import Dispatcher
from eaglesearch.execution.searcher import StrategySearcher
from eaglesearch.execution.tune_entry import run_tune_trial
from eaglesearch.spec import ResourcesSpec, SchedulerSpec

COMPLETE_MARKER = "eaglesearch_complete"


@dataclass(frozen=True)
class RayRunInfo:
    resumed: bool
    experiment_path: Path
    errors: int


def _init_ray(address: str | None, tracking_uri: str) -> None:
    import ray

    if ray.is_initialized():
        return
    env = {"OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false", "MLFLOW_TRACKING_URI": tracking_uri,
           "RAY_CHDIR_TO_TRIAL_DIR": "0"}
    kwargs: dict = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False,
                    "runtime_env": {"env_vars": env}}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, **kwargs)


def _trial_name(trial) -> str:
    request = trial.config.get("request", {})
    return f"r{request.get('round', 0)}-{request.get('key', trial.trial_id)}-{trial.trial_id}"


def make_scheduler(spec: SchedulerSpec, mode: str, max_t: int):
    """Ray Tune's ASHA over the trials' intermediate reports: time is final-stage steps, the metric the
    subset objective (``execution/intermediate.py``)."""
    from ray.tune.schedulers import ASHAScheduler

    from eaglesearch.execution.intermediate import OBJECTIVE, STEP

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
    from ray import tune

    _init_ray(address, dispatcher.context.tracking_uri)
    storage.mkdir(parents=True, exist_ok=True)
    path = storage / tune_name
    if dispatcher.context.workers > 1:
        # The Tune trial is only a driver: its TorchTrainer workers hold the CPUs/GPUs (Train V2 pattern).
        request: dict[str, float] = {"cpu": 0.01}
    else:
        request = {"cpu": resources.cpus_per_trial}
        if resources.gpus_per_trial:
            request["gpu"] = resources.gpus_per_trial
    trainable = tune.with_resources(run_tune_trial, request)

    resumed = False
    if path.exists() and not (path / COMPLETE_MARKER).exists() and tune.Tuner.can_restore(str(path)):
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
                reuse_actors=False,
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
