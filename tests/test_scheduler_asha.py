"""ASHA for grid and Optuna searches (``scheduler: {kind: asha, ...}``): the spec, the scheduler Ray gets, stopped
trials in strategies and in the record, and intermediate evaluations that leave a trial's result unchanged."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from eaglesearch.search import GridStrategy
from eaglesearch.spec import GridStrategySpec, Recipe, SchedulerSpec, SearchSpace, TrialFactory, TrialResult

ROOT = Path(__file__).resolve().parents[1]
FACTORY = TrialFactory(recipe=Recipe.model_validate({"name": "t", "model": {"experts": [{"name": "clip"}]}}))
GRID = {"kind": "grid", "factors": {"train.lr": [1e-4, 5e-4, 1e-3]}}


def test_scheduler_spec_and_where_it_is_allowed() -> None:
    space = SearchSpace.model_validate({"name": "s", "recipe": "r.yaml", "strategy": GRID,
                                        "scheduler": {"kind": "asha", "eval_every": 5}})
    assert space.scheduler == SchedulerSpec(kind="asha", eval_every=5)
    assert space.scheduler.eval_limit == 32 and space.scheduler.reduction_factor == 3
    with pytest.raises(ValidationError, match="use strategy.halving"):
        SearchSpace.model_validate({"name": "s", "recipe": "r.yaml", "scheduler": {"kind": "asha", "eval_every": 5},
                                    "strategy": {"kind": "greedy", "base": ["clip"], "candidates": ["sam"]}})
    with pytest.raises(ValidationError):
        SchedulerSpec(kind="asha", eval_every=5, reduction_factor=1)


def test_make_scheduler_counts_time_in_final_stage_steps() -> None:
    from ray.tune.schedulers import AsyncHyperBandScheduler

    from eaglesearch.execution.ray_runner import make_scheduler

    asha = make_scheduler(SchedulerSpec(kind="asha", eval_every=10, reduction_factor=2), "max", 80)
    assert isinstance(asha, AsyncHyperBandScheduler)
    assert (asha._time_attr, asha._metric, asha._mode, asha._max_t) == ("step", "objective", "max", 80)
    assert [r[0] for r in asha._brackets[0]._rungs] == [80, 40, 20, 10]  # grace 10, x2 up to max_t 80
    with pytest.raises(ValueError, match="grace_period 80 is not below max_t 80"):
        make_scheduler(SchedulerSpec(kind="asha", eval_every=80), "max", 80)


@dataclass(frozen=True)
class Curve:
    """A trial as ASHA sees it: an id and its intermediate objective at each reported step."""

    trial_id: str
    objective: dict[int, float]


def test_asha_stops_an_early_loser_and_a_late_bloomer_at_the_first_rung() -> None:
    """Our ASHA (``make_scheduler``: grace 10 steps, reduction factor 2, max_t 40: rungs at 10 and 20) fed the
    intermediate reports of four trials, as Tune interleaves them when all four run at once.

    * the known early loser (``loser``: 0.10 at step 10, never better) is stopped at the first rung;
    * the known late bloomer (``bloomer``: 0.20 at step 10, 0.30 at 20, then 0.85 at 40: the best final score) is
      stopped at the first rung as well. That is ASHA's documented cost: a rung compares trials at equal steps
      only, so a slow starter below the rung's cutoff (the 1 - 1/reduction_factor quantile of the scores recorded
      there so far) never gets the budget to bloom. A greedy search's ``strategy.halving`` has the same blind spot
      and measures it per round (Spearman's rho between rung and full-budget scores, ``search/halving.py``).

    The first trial to reach a rung is never stopped there (no score is recorded to compare it with): ASHA is
    asynchronous, so its decisions depend on arrival order; the order below is the one Tune uses for trials
    started together (each reports step 10 before any reports step 20).
    """
    from ray.tune.schedulers import TrialScheduler

    from eaglesearch.execution.ray_runner import make_scheduler
    from eaglesearch.execution.searcher import stopped_result

    asha = make_scheduler(SchedulerSpec(kind="asha", eval_every=10, reduction_factor=2), "max", 40)
    curves = [Curve("steady", {10: 0.50, 20: 0.60, 30: 0.65, 40: 0.70}),
              Curve("fast", {10: 0.55, 20: 0.62, 30: 0.63, 40: 0.64}),
              Curve("loser", {10: 0.10, 20: 0.12, 30: 0.13, 40: 0.15}),
              Curve("bloomer", {10: 0.20, 20: 0.30, 30: 0.70, 40: 0.85})]
    for trial in curves:
        asha.on_trial_add(None, trial)  # type: ignore[arg-type]
    stopped: dict[str, int] = {}
    for step in (10, 20, 30, 40):
        for trial in curves:
            if trial.trial_id in stopped:
                continue
            report = {"step": step, "objective": trial.objective[step], "status": "running"}
            if asha.on_trial_result(None, trial, report) == TrialScheduler.STOP:  # type: ignore[arg-type]
                stopped[trial.trial_id] = step
    assert stopped == {"loser": 10, "bloomer": 10, "steady": 40, "fast": 40}  # at max_t every trial is "stopped"
    assert max(curves, key=lambda c: c.objective[40]).trial_id == "bloomer"  # ...the one that would have won

    # What the strategy is told: the two stopped at step 10 never win, so the steady trial is the incumbent.
    s = GridStrategy(GridStrategySpec.model_validate({"kind": "grid", "factors": {"train.lr": [1e-4, 2e-4, 3e-4,
                                                                                                4e-4]}}), FACTORY)
    proposals = [p for p in iter(s.ask, None)]
    for p, trial in zip(proposals, curves, strict=True):
        if stopped[trial.trial_id] < 40:
            s.tell(p.key, stopped_result(p.key, {"step": 10.0, "objective": trial.objective[10]}))
        else:
            s.tell(p.key, TrialResult(key=p.key, status="finished", objective=trial.objective[40]))
    assert s.finished and s.incumbent() == proposals[0]


def test_stopped_trials_are_told_but_never_win() -> None:
    from eaglesearch.execution.searcher import stopped_result

    s = GridStrategy(GridStrategySpec.model_validate(GRID), FACTORY)
    proposals = []
    while (p := s.ask()) is not None:
        proposals.append(p)
    stopped = stopped_result(proposals[2].key, {"step": 20.0, "objective": 0.9, "intermediate/count": 0.9,
                                                "status": "running"})
    assert stopped.status == "stopped" and stopped.objective is None and not stopped.ok
    assert stopped.metrics == {"asha/stopped_at_step": 20.0, "asha/objective": 0.9, "asha/count": 0.9}
    assert "after step 20" in (stopped.error or "")
    s.tell(proposals[0].key, TrialResult(key=proposals[0].key, status="finished", objective=0.4))
    s.tell(proposals[1].key, TrialResult(key=proposals[1].key, status="finished", objective=0.5))
    # Even a stopped trial carrying an objective (a partial one) cannot become the incumbent.
    s.tell(proposals[2].key, stopped.model_copy(update={"objective": 0.9}))
    assert s.finished and s.incumbent() == proposals[1]


def test_optuna_is_told_a_stopped_trial_as_pruned() -> None:
    from eaglesearch.search.optuna_strategy import OptunaStrategy
    from eaglesearch.spec import OptunaStrategySpec

    spec = OptunaStrategySpec.model_validate({"kind": "optuna", "n_trials": 2, "seed": 0,
                                              "params": {"train.lr": {"low": 1e-4, "high": 1e-3, "log": True}}})
    s = OptunaStrategy(spec, FACTORY)
    first, second = s.ask(), s.ask()
    assert first is not None and second is None  # batches of one
    s.tell(first.key, TrialResult(key=first.key, status="stopped", metrics={"asha/objective": 0.3}))
    assert [t.state.name for t in s.study.trials] == ["PRUNED"]


def test_a_stopped_run_answers_its_own_search_but_is_never_a_cache_hit(tmp_path: Path) -> None:
    from eaglesearch.execution.dispatch import Dispatcher, RunContext
    from eaglesearch.execution.searcher import stopped_result
    from eaglesearch.execution.worker import lookup
    from eaglesearch.tracking import TrackingStore

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = TrackingStore(uri)
    experiment = store.ensure_experiment("asha")
    parent, _ = store.open_parent("asha", "f", "asha-f", "name: asha\n", {})
    context = RunContext(search="asha", parent_id=parent, experiment_id=experiment, tracking_uri=uri,
                         workdir=str(tmp_path), artifacts=str(tmp_path / "a"), threads=1, eval_every=5)
    dispatcher = Dispatcher(strategy=GridStrategy(GridStrategySpec.model_validate(GRID), FACTORY), context=context)
    request = dispatcher.next_request()
    assert request is not None and request.eval_every == 5 and request.eval_limit == 32
    store.start_trial(parent, experiment, request.trial, search="asha", round=0, role="grid", added=None,
                      strategy="grid", label=request.label)
    dispatcher.stopped(request.key, stopped_result(request.key, {"step": 5.0, "objective": 0.25}))

    assert dispatcher.strategy.result(request.key).status == "stopped"  # type: ignore[union-attr]
    runs = store.trial_runs(parent)
    row = runs[runs["key"] == request.key].iloc[0]
    assert row["status"] == "FINISHED" and row["status_tag"] == "stopped" and row["asha/objective"] == 0.25
    assert "objective" not in runs or math.isnan(row["objective"])  # nothing for a leaderboard to rank
    assert store.find_finished(request.key) is None  # never served to another search as a finished trial
    again = lookup(store, request)  # ...but its own search's resume is answered from the record
    assert again is not None and again.status == "stopped"


def test_inline_executor_refuses_a_scheduler(tmp_path: Path) -> None:
    from eaglesearch.execution.controller import run_search
    from eaglesearch.model.validate import load_checked_search

    space = tmp_path / "s.yaml"
    space.write_text(f"name: s\nrecipe: {ROOT / 'experiments' / 'tiny_cpu.yaml'}\nstrategy:\n  kind: grid\n"
                     "  factors: {experts: [[clip]], train.lr: [1.0e-4, 5.0e-4]}\nscheduler: {kind: asha, eval_every: 50}\n")
    with pytest.raises(ValueError, match="needs the Ray executor"):
        run_search(load_checked_search(space), tracking_uri=f"sqlite:///{tmp_path / 'db'}", workdir=tmp_path,
                   executor="inline", show_progress=False)
    assert not (tmp_path / "db").exists()  # refused before anything was recorded


@pytest.mark.slow
def test_intermediate_evaluations_leave_the_trial_result_unchanged(tmp_path: Path) -> None:
    from eaglesearch.spec import ExpertSpec, load_recipe
    from eaglesearch.trial.intermediate import IntermediateSettings
    from eaglesearch.trial.run import run_trial_core
    from eaglesearch.trial.workspace import Workspace
    from tests.e2e_helpers import tiny_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(tiny_recipe(train="{steps: 6, batch_size: 8, lr: 5.0e-4, log_every: 2}"))
    recipe, _ = load_recipe(path)
    trial = TrialFactory(recipe=recipe).make((ExpertSpec(name="clip", preset="tiny_random", resolution=64),))
    plain = run_trial_core(trial, Workspace.at(tmp_path / "plain"), threads=1)
    reports: list[dict[str, float]] = []
    watched = run_trial_core(trial, Workspace.at(tmp_path / "watched"), threads=1,
                             intermediate=IntermediateSettings(every=2, limit=4, report=reports.append))
    assert plain is not None and watched is not None
    assert [r["step"] for r in reports] == [2.0, 4.0]  # not at step 6: the trial's own evaluation covers it
    assert all(0 <= r["objective"] <= 1 and "intermediate/count" in r for r in reports)
    assert watched.objective == plain.objective
    assert watched.loss_history == plain.loss_history
    assert [p.scored.prediction for p in watched.predictions] == [p.scored.prediction for p in plain.predictions]


class StopAllButFirst:
    """A deterministic stand-in for ASHA's judgement (whose choices depend on the values): the first trial runs to
    the end, every later one is stopped at its first intermediate report. Built lazily (Ray imports slowly)."""

    @staticmethod
    def make(*_args: object) -> object:
        from ray.tune.schedulers import FIFOScheduler, TrialScheduler

        class Scheduler(FIFOScheduler):
            def __init__(self) -> None:
                super().__init__()
                self.first: str | None = None

            def on_trial_result(self, tune_controller, trial, result):
                self.first = self.first or trial.trial_id
                if trial.trial_id != self.first and result.get("status") == "running":
                    return TrialScheduler.STOP
                return TrialScheduler.CONTINUE

        return Scheduler()


@pytest.mark.slow
def test_a_trial_the_scheduler_stops_on_ray_is_recorded_stopped(tmp_path: Path, monkeypatch) -> None:
    import ray

    from eaglesearch.execution import ray_runner
    from eaglesearch.execution.controller import run_search
    from eaglesearch.model.validate import load_checked_search
    from eaglesearch.tracking import TrackingStore
    from tests.e2e_helpers import tiny_recipe

    (tmp_path / "recipe.yaml").write_text(tiny_recipe(train="{steps: 6, batch_size: 8, lr: 5.0e-4, log_every: 2}"))
    space = tmp_path / "s.yaml"
    space.write_text("name: asha-ray\nrecipe: recipe.yaml\nstrategy:\n  kind: grid\n"
                     "  factors: {experts: [[{name: clip, resolution: 64}]], train.lr: [5.0e-4, 1.0e-4]}\n"
                     "scheduler: {kind: asha, eval_every: 2, eval_limit: 4}\n"
                     "resources: {cpus_per_trial: 1, max_concurrent_trials: 1, max_failures: 0}\n")
    monkeypatch.setattr(ray_runner, "make_scheduler", StopAllButFirst.make)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        outcome = run_search(load_checked_search(space), tracking_uri=uri, workdir=tmp_path / "ws",
                             show_progress=False)
    finally:
        ray.shutdown()
    assert outcome.complete  # the stopped trial answers the replay from the record
    runs = TrackingStore(uri).trial_runs(outcome.parent_id).set_index("param.train.sft.lr")
    assert runs.loc["0.0005", "status_tag"] == "finished" and runs.loc["0.0005", "objective"] >= 0
    stopped = runs.loc["0.0001"]
    assert stopped["status_tag"] == "stopped" and stopped["asha/stopped_at_step"] == 2.0
    assert 0 <= stopped["asha/objective"] <= 1 and math.isnan(stopped["objective"])
