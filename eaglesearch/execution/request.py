"""What the controller sends to a trial worker: the trial, where to record it, and how to run it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from eaglesearch.spec import TrialSpec


class TrialRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    trial: TrialSpec
    key: str
    search: str
    strategy: str
    round: int
    role: str
    added: str | None
    label: str
    parent_id: str
    experiment_id: str
    tracking_uri: str
    workdir: str
    artifacts: str  # root of the stage-artifact store (path or fsspec URL)
    threads: int
    workers: int = 1  # data-parallel workers for this trial (Ray Train TorchTrainer when > 1)
    cpus_per_worker: float = 1.0  # multi-worker trials: CPUs each Ray Train worker reserves (multi_worker.py)
    parallelism: Literal["ddp", "fsdp"] = "ddp"  # multi-worker trials: a model copy per worker, or a shard
    eval_every: int | None = None  # under a scheduler (ASHA): evaluate every N final-stage steps and report it
    eval_limit: int = 32  # items per benchmark in those intermediate evaluations
    keep_weights: bool = False  # log the final weights with the run (the search keeps its best keep_best)
    max_failures: int = 0  # multi-worker trials: Ray Train restarts of a worker group that lost a rank
    project_dir: str | None = None  # the driver's working directory: the trial's relative paths mean it (trial/project.py)
