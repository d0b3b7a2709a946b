"""The controller's side of a search: ask the strategy, dispatch each proposal, tell the strategy the results.

Shared by the Ray Tune searcher adapter and the inline executor, so both behave the same. Picklable: Ray Tune
snapshots it inside the searcher; the tracking client is re-opened lazily after a restore.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from eaglesearch.execution.events import listener
from eaglesearch.execution.request import TrialRequest
from eaglesearch.execution.worker_group import cpus_per_worker, parallelism_for
from eaglesearch.search import Proposal, Strategy
from eaglesearch.spec import ResourcesSpec, TrialResult
from eaglesearch.spec.progress import StageProgress
from eaglesearch.tracking import TrackingStore, Winners
from eaglesearch.trial.workspace import Workspace


@dataclass
class RunContext:
    """Where trials are recorded and how they run; identical for every trial of one search invocation."""

    search: str
    parent_id: str
    experiment_id: str
    tracking_uri: str
    workdir: str
    artifacts: str
    threads: int
    workers: int = 1
    parallelism: str = "ddp"  # how multi-worker trials hold the model: ddp or fsdp (auto: see resources)
    resources: ResourcesSpec | None = None  # with parallelism auto, each trial's memory plan decides
    eval_every: int | None = None  # a scheduler watches the trials: intermediate evaluation cadence (steps)
    eval_limit: int = 32
    keep_best: int = 0  # trials whose final weights the search keeps (the best by objective/mode); 0: none saved
    objective: str = "objective"
    mode: str = "max"
    project_dir: str = field(default_factory=os.getcwd)  # what the trials' relative paths are relative to


@dataclass
class Dispatcher:
    strategy: Strategy
    context: RunContext
    in_flight: dict[str, Proposal] = field(default_factory=dict)
    _store: TrackingStore | None = field(default=None, repr=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_store"] = None
        return state

    @property
    def store(self) -> TrackingStore:
        if self._store is None:
            self._store = TrackingStore(self.context.tracking_uri)
        return self._store

    @property
    def finished(self) -> bool:
        return self.strategy.finished

    def request_for(self, proposal: Proposal) -> TrialRequest:
        c = self.context
        return TrialRequest(
            trial=proposal.trial, key=proposal.trial.key, search=c.search, strategy=self.strategy.kind,
            round=proposal.round, role=proposal.role, added=proposal.added, label=proposal.label,
            parent_id=c.parent_id, experiment_id=c.experiment_id, tracking_uri=c.tracking_uri, workdir=c.workdir, artifacts=c.artifacts,
            threads=c.threads, workers=c.workers, eval_every=c.eval_every,
            cpus_per_worker=cpus_per_worker(c.resources, c.workers) if c.resources and c.workers > 1 else 1.0,
            parallelism=parallelism_for(c.resources, proposal.trial) if c.parallelism == "auto" else c.parallelism,
            eval_limit=c.eval_limit, keep_weights=c.keep_best > 0,
            max_failures=c.resources.max_failures if c.resources is not None else 0, project_dir=c.project_dir,
        )

    def next_request(self) -> TrialRequest | None:
        """The next trial for a worker, or None (round in flight, or search finished).

        No lookup here: the worker looks the key up in the record (it must, for Tune's at-least-once re-execution
        to be harmless) and serves a recorded trial without training, so each trial is looked up once.
        """
        proposal = self.strategy.ask()
        if proposal is None:
            return None
        request = self.request_for(proposal)
        listener().trial_started(proposal)
        self.in_flight[request.key] = proposal
        return request

    def complete(self, key: str, result: TrialResult) -> None:
        proposal = self.in_flight.pop(key, None)
        self.strategy.tell(key, result)
        for full_key in self.strategy.released_checkpoints():  # a decided round's discontinued rung candidates
            Workspace.at(self.context.workdir, self.context.artifacts).remove_trial_scratch(full_key)
        if proposal is not None:
            listener().trial_finished(proposal, result)
        if self.context.keep_best > 0 and result.status in ("finished", "cached"):
            # Weights of trials that fell out of the best keep_best are deleted now, not when the search ends: what
            # is stored stays at keep_best plus the trials in flight (tracking/winners.py).
            answer = self.strategy.incumbent()
            Winners(self.context.tracking_uri).prune(self.context.parent_id, self.context.objective,
                                                      self.context.mode, self.context.keep_best,
                                                      answer=answer.key if answer is not None else None,
                                                      protect=self.strategy.undecided(),
                                                      experiment_id=self.context.experiment_id)

    def stage_progress(self, key: str, progress: StageProgress) -> None:
        """Where a trial in flight is inside its stages (``execution/stage_progress.py``), for the listener."""
        proposal = self.in_flight.get(key)
        if proposal is not None:
            listener().stage_progress(proposal, progress)

    def stopped(self, key: str, result: TrialResult) -> None:
        """A scheduler (ASHA) stopped the trial: record its RUNNING run as ``stopped`` with the partial numbers
        and tell the strategy (a stopped trial never wins; its search's resume answers it from the record)."""
        for run_id in self._running(key):
            self.store.stop_trial(run_id, result.metrics, result.error or "stopped")
        self.complete(key, result)

    def crashed(self, key: str, error: str) -> None:
        """A worker died for good (after Ray's retries): record the run FAILED and tell the strategy."""
        for run_id in self._running(key):
            self.store.fail_trial(run_id, error)
        self.complete(key, TrialResult(key=key, status="failed", error=error))

    def _running(self, key: str) -> list[str]:
        return self.store.running_trials(self.context.parent_id, self.context.experiment_id, key)
