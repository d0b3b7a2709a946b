"""Run a whole search: open the MLflow parent run, drive the strategy on an executor, close the parent run.

The report is written above this package, by the caller (``eaglesearch.app.run.run_and_report``): execution/ is
dispatch only, and the outcome carries what the report needs (the parent run, its store, the baseline).
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from eaglesearch.execution.dispatch import Dispatcher, RunContext
from eaglesearch.execution.events import set_listener
from eaglesearch.execution.gains import RecordComparator, record_rounds
from eaglesearch.execution.progress import ProgressKind, make_progress
from eaglesearch.execution.worker_group import PARALLELISM_ENV, parallelism_for, workers_per_trial
from eaglesearch.search import Proposal, RoundDecision, make_strategy
from eaglesearch.search.replay import replay
from eaglesearch.spec import LoadedSearch, TrainSpec
from eaglesearch.tracking import RegisteredWinner, TrackingStore, Winners, absolute_uri
from eaglesearch.tracking.uri import create_store_once, probe_store
from eaglesearch.trial.workspace import Workspace

Executor = Literal["ray", "inline"]


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped the search; its parent run and the trials it was running are marked KILLED."""

    def __init__(self, parent_id: str) -> None:
        super().__init__(f"interrupted; MLflow parent run {parent_id} is marked KILLED")
        self.parent_id = parent_id


@dataclass(frozen=True)
class SearchOutcome:
    parent_id: str
    resumed: bool
    complete: bool
    decisions: list[RoundDecision]
    tracking_uri: str  # the absolute URI of the store the search recorded into
    baseline_key: str | None = None  # the strategy's baseline trial, which the report measures deltas against
    pareto: list[Proposal] = field(default_factory=list)  # Optuna searches: the strategy's non-dominated trials
    kept: list[RegisteredWinner] = field(default_factory=list)  # registered versions of the best keep_best trials


def scheduler_max_t(loaded: LoadedSearch) -> int:
    """``scheduler.max_t``, else the steps of the recipe's final stage (which must then be given in steps)."""
    assert loaded.space.scheduler is not None
    if loaded.space.scheduler.max_t is not None:
        return loaded.space.scheduler.max_t
    final = TrainSpec.model_validate(loaded.factory.base_dict()["train"]).joint_stages[-1]
    if final.steps is None:
        raise ValueError(f"{loaded.path}: the final stage '{final.name}' is given in epochs, so ASHA cannot know "
                         "its length in steps; set scheduler.max_t")
    return final.steps


def run_search(
    loaded: LoadedSearch,
    *,
    tracking_uri: str,
    workdir: Path | None = None,
    artifacts: str | None = None,
    executor: Executor = "ray",
    address: str | None = None,
    show_progress: bool = True,
    progress_kind: ProgressKind = "auto",
    shared_workdir: bool = False,
) -> SearchOutcome:
    space = loaded.space
    if space.scheduler is not None and executor == "inline":
        raise ValueError(f"{loaded.path}: scheduler ({space.scheduler.kind}) stops trials through Ray Tune and "
                         "needs the Ray executor; drop --executor inline, or remove scheduler to run every trial "
                         "in full inline")
    max_t = scheduler_max_t(loaded) if space.scheduler is not None else 0
    uri = absolute_uri(tracking_uri)
    probe_store(uri)  # an unusable store fails here, in seconds, before Ray or any trial starts
    if executor == "ray" and address:
        from eaglesearch.execution.cluster import prepare_cluster
        from eaglesearch.execution.shared_storage import check_shared_storage, shared_workdir_declared

        prepare_cluster(address)
        check_shared_storage(address, uri, Workspace.artifacts_url(Workspace.root_path(workdir), artifacts),
                             shared_workdir_declared(shared_workdir))
    workspace = Workspace.at(workdir, artifacts)
    create_store_once(uri)  # searches started together on a new sqlite file must not both create its schema
    store = TrackingStore(uri)
    experiment_id = store.ensure_experiment(space.name)
    tune_name = f"{space.name}-{loaded.fingerprint}"
    comparator = RecordComparator(uri)  # greedy rounds pair candidates with the incumbent from the record
    strategy = make_strategy(loaded, comparator)
    params = {"objective": space.strategy.objective, "mode": space.strategy.mode, "strategy": space.strategy.kind,
              "recipe": loaded.recipe.name, "executor": executor}
    cost = getattr(space.strategy, "cost", None)
    if cost is not None:  # a two-objective search: the report adds its Pareto front (report/pareto.py)
        params["cost"] = f"{cost.metric}:{cost.mode}"
    if strategy.baseline_key() is not None:  # what `eaglesearch report` measures deltas against, from the record
        params["baseline_key"] = str(strategy.baseline_key())
    parent_id, resumed = store.open_parent(space.name, loaded.fingerprint, tune_name, loaded.path.read_text(), params)
    context = RunContext(search=space.name, parent_id=parent_id, experiment_id=experiment_id, tracking_uri=uri,
                         workdir=str(workspace.root), artifacts=workspace.artifacts, threads=space.resources.torch_threads,
                         workers=workers_per_trial(space.resources),
                         parallelism=("auto" if space.resources.parallelism == "auto"
                                      and not os.environ.get(PARALLELISM_ENV) else parallelism_for(space.resources)),
                         resources=space.resources,
                         eval_every=space.scheduler.eval_every if space.scheduler else None,
                         eval_limit=space.scheduler.eval_limit if space.scheduler else 32,
                         keep_best=space.keep_best, objective=space.strategy.objective, mode=space.strategy.mode)
    dispatcher = Dispatcher(strategy=strategy, context=context)

    progress = make_progress(progress_kind if show_progress else "none", space.name, strategy, space.strategy.mode,
                             concurrency=1 if executor == "inline" else space.resources.max_concurrent_trials)
    set_listener(progress)
    try:
        if progress is not None:
            progress.__enter__()
        if executor == "inline":  # imported here: the trial code it runs in this process is heavy (torch)
            from eaglesearch.execution.inline_runner import run_inline

            run_inline(dispatcher)
        else:
            from eaglesearch.execution.ray_runner import make_scheduler, mark_complete, run_with_ray

            scheduler = (make_scheduler(space.scheduler, space.strategy.mode, max_t) if space.scheduler is not None
                         else None)
            info = run_with_ray(dispatcher, space.resources, tune_name, workspace.ray_dir, address, scheduler)
            resumed = resumed or info.resumed
    except KeyboardInterrupt:
        _mark_interrupted(store, parent_id)
        raise SearchInterrupted(parent_id) from None
    finally:
        if progress is not None:
            progress.__exit__(None, None, None)
        set_listener(None)

    # The record is the truth: replay the strategy on it to learn whether the search is complete and its path.
    final = make_strategy(loaded, comparator)
    complete = replay(final, store.trial_results(parent_id, experiment_id))
    if executor != "inline" and complete:
        mark_complete(info)
    decisions = final.decisions()
    if decisions:  # what the strategy adopted and why, so reports need not guess it from the trials
        record_rounds(store, parent_id, decisions)
    answer = final.incumbent() if complete else None
    kept = _register_kept(loaded, uri, parent_id, answer.key if answer is not None else None) \
        if complete and space.keep_best > 0 else []
    store.close_parent(parent_id, "FINISHED" if complete else "FAILED")
    return SearchOutcome(parent_id=parent_id, resumed=resumed, complete=complete,
                         decisions=decisions, tracking_uri=uri,
                         baseline_key=final.baseline_key(),
                         pareto=final.pareto_front(), kept=kept)


def _register_kept(loaded: LoadedSearch, uri: str, parent_id: str, answer: str | None) -> list[RegisteredWinner]:
    """The end of a complete search: prune to the best ``keep_best`` once more (a resumed search's record may hold
    more), the strategy's ``answer`` first, and register them as versions of the model named after the search."""
    strategy = loaded.space.strategy
    winners = Winners(uri)
    kept = winners.prune(parent_id, strategy.objective, strategy.mode, loaded.space.keep_best, answer=answer)
    return winners.register(loaded.space.name, kept, strategy.objective)


def _mark_interrupted(store: TrackingStore, parent_id: str) -> None:
    """Ctrl-C: the parent and its trials still RUNNING become KILLED, so the record says the search stopped (the
    next invocation opens a new parent and serves every finished trial from the record). A second Ctrl-C while
    this is written is ignored: a half-written mark would leave the parent RUNNING."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        runs = store.trial_runs(parent_id)
        if not runs.empty:
            for run_id in runs.loc[runs["status"] == "RUNNING", "run_id"]:
                store.close_parent(str(run_id), "KILLED")
        store.close_parent(parent_id, "KILLED")
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
