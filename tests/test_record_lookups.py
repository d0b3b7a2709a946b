"""One record lookup per trial: the worker's, in one query; the replay after a search reads the parent's children
once; metric histories go to MLflow in batches."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from eaglesearch.spec import TrialResult
from eaglesearch.tracking import TrackingStore
from eaglesearch.tracking.records import TrialLookup
from tests.test_tracking import META, make_trial, run_trial


@pytest.fixture()
def store(tmp_path: Path) -> TrackingStore:
    return TrackingStore(f"sqlite:///{tmp_path}/mlflow.db")


def _parent(store: TrackingStore, search: str) -> tuple[str, str]:
    exp = store.ensure_experiment(search)
    pid, _ = store.open_parent(search, "fp", f"tune-{search}", "", {})
    return exp, pid


def test_lookup_trial_answers_both_questions_of_the_two_old_lookups(store: TrackingStore) -> None:
    exp, pid = _parent(store, "s")
    trial, other = make_trial("clip"), make_trial("sam")
    assert store.lookup_trial(pid, trial.key) == TrialLookup(in_parent=None, finished=None)
    source = run_trial(store, exp, pid, trial, 0.6)

    mine = store.lookup_trial(pid, trial.key)  # under this parent: that run, nothing else needed
    assert mine.in_parent is not None and mine.in_parent.run_id == source and mine.finished is None
    assert mine.in_parent == store.find_in_parent(pid, trial.key)

    exp2, pid2 = _parent(store, "s2")  # another search: a source to be served from, not yet its own
    found = store.lookup_trial(pid2, trial.key)
    assert found.in_parent is None and found.finished == store.find_finished(trial.key)
    assert found.finished is not None and found.finished.run_id == source and found.finished.objective == 0.6
    cached = store.record_cached(pid2, exp2, trial, found.finished, **META, label=trial.label)
    again = store.lookup_trial(pid2, trial.key)
    assert again.in_parent is not None and again.in_parent.run_id == cached and again.in_parent.status == "cached"

    failed = store.start_trial(pid2, exp2, other, **META, label=other.label)
    assert store.lookup_trial(pid2, other.key).in_parent is None  # running is not done
    store.fail_trial(failed, "RuntimeError: boom")
    assert store.lookup_trial(pid2, other.key).in_parent.status == "failed"  # not run again under this parent
    assert store.lookup_trial(pid, other.key).finished is None  # a failed run is no source for another search


def test_trial_results_reads_every_completed_child_of_a_parent(store: TrackingStore) -> None:
    exp, pid = _parent(store, "s")
    a, b, c = make_trial("clip"), make_trial("sam"), make_trial("convnext")
    run_trial(store, exp, pid, a, 0.1)
    latest = run_trial(store, exp, pid, a, 0.2)  # a key recorded twice: the run that completed last counts
    store.fail_trial(store.start_trial(pid, exp, b, **META, label=b.label), "ValueError: bad")
    store.start_trial(pid, exp, c, **META, label=c.label)  # still running: not a result
    _, other_parent = _parent(store, "s-other")
    run_trial(store, exp, other_parent, c, 0.9)

    results = store.trial_results(pid, exp)
    assert set(results) == {a.key, b.key}
    assert results[a.key].run_id == latest and results[a.key].objective == 0.2
    assert results[b.key].status == "failed" and results[b.key].error == "ValueError: bad"


def test_a_long_metric_history_is_logged_in_batches_of_mlflow_limit(store: TrackingStore,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    exp, pid = _parent(store, "s")
    trial = make_trial("clip")
    rid = store.start_trial(pid, exp, trial, **META, label=trial.label)
    batches: list[int] = []
    log_batch = store._client.log_batch

    def counting(run_id: str, metrics: Any = (), **kw: Any) -> None:
        batches.append(len(metrics))
        log_batch(run_id, metrics=metrics, **kw)

    monkeypatch.setattr(store._client, "log_batch", counting)
    curve = [(step, 10.0 - step / 1000) for step in range(2500)]
    store.log_history(rid, "train/loss", curve)
    assert batches == [1000, 1000, 500]
    assert store.metric_history(rid, "train/loss") == curve


def test_the_dispatcher_hands_every_proposal_to_a_worker_without_a_lookup(tmp_path: Path) -> None:
    from eaglesearch.execution.dispatch import Dispatcher, RunContext
    from eaglesearch.model.validate import load_checked_search
    from eaglesearch.search import make_strategy
    from tests.test_faults import grid_space, make_project

    root = make_project(tmp_path, {"g": grid_space("no-lookup", "lr", "5.0e-4", "1.0e-3")})
    loaded = load_checked_search(root / "search_spaces" / "g.yaml")

    class NoStore:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the dispatcher used the record ({name}); the worker's lookup is the only one")

    context = RunContext(search="no-lookup", parent_id="p", experiment_id="e", tracking_uri="sqlite://",
                         workdir=str(tmp_path), artifacts=str(tmp_path), threads=1)
    dispatcher = Dispatcher(strategy=make_strategy(loaded), context=context, _store=NoStore())  # type: ignore[arg-type]
    first, second = dispatcher.next_request(), dispatcher.next_request()
    assert first is not None and second is not None and first.key != second.key
    assert dispatcher.next_request() is None and set(dispatcher.in_flight) == {first.key, second.key}
    dispatcher.complete(first.key, TrialResult(key=first.key, status="finished", objective=0.5))
    assert set(dispatcher.in_flight) == {second.key}


def _count(monkeypatch: pytest.MonkeyPatch, calls: Counter, *names: str) -> None:
    """Wrap TrackingStore methods (every instance, this process) to count calls by their key argument."""
    for name in names:
        original = getattr(TrackingStore, name)

        def wrapper(self: TrackingStore, *args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            calls[(_name, args[1] if _name == "lookup_trial" else None)] += 1
            return _original(self, *args, **kw)

        monkeypatch.setattr(TrackingStore, name, wrapper)


@pytest.mark.slow
def test_one_lookup_per_trial_and_one_record_read_for_the_replay(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A search run inline twice (the second is served from the record): every trial key is looked up exactly
    once per search, never with the two old per-question lookups, and the replay reads the record once."""
    from eaglesearch.execution.controller import run_search
    from eaglesearch.model.validate import load_checked_search
    from tests.test_faults import grid_space, make_project

    root = make_project(tmp_path, {"g": grid_space("one-lookup", "lr", "5.0e-4", "1.0e-3")})
    uri = f"sqlite:///{root / 'mlflow.db'}"
    statuses = []
    for _ in range(2):
        calls: Counter = Counter()
        with monkeypatch.context() as patch:
            _count(patch, calls, "lookup_trial", "find_in_parent", "find_finished", "trial_results")
            outcome = run_search(load_checked_search(root / "search_spaces" / "g.yaml"), tracking_uri=uri,
                                 workdir=root / "ws", executor="inline",
                                 show_progress=False)
        assert outcome.complete
        runs = TrackingStore(uri).trial_runs(outcome.parent_id)
        lookups = {key: n for (name, key), n in calls.items() if name == "lookup_trial"}
        assert lookups == {key: 1 for key in runs["key"]}, calls
        assert calls[("find_in_parent", None)] == calls[("find_finished", None)] == 0
        assert calls[("trial_results", None)] == 1
        statuses.append(sorted(runs["status_tag"]))
    assert statuses == [["finished", "finished"], ["cached", "cached"]]
