"""TrackingStore against a throwaway sqlite store: parents, trials, caching, dedupe, lookups."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from eaglesearch.spec import ExpertSpec, ModelSpec, TrialResult, TrialSpec
from eaglesearch.tracking import TrackingStore, absolute_uri, default_tracking_uri


def make_trial(*names: str, seed: int = 0) -> TrialSpec:
    return TrialSpec(model=ModelSpec(experts=tuple(ExpertSpec(name=n) for n in names)), seed=seed)


def result(trial: TrialSpec, objective: float, **extra: float) -> TrialResult:
    metrics = {"score/count": objective, "score/color": objective / 2, "cost/params_total": 1234.0, **extra}
    return TrialResult(key=trial.key, status="finished", objective=objective, metrics=metrics)


META = {"search": "s", "round": 0, "role": "base", "added": None, "strategy": "greedy"}


@pytest.fixture()
def store(tmp_path: Path) -> TrackingStore:
    return TrackingStore(f"sqlite:///{tmp_path}/mlflow.db")


@pytest.fixture()
def parent(store: TrackingStore) -> tuple[str, str]:
    exp = store.ensure_experiment("s")
    pid, resumed = store.open_parent("s", "fp", "tune-s", "name: s\n", {"objective": "objective"})
    assert not resumed
    return exp, pid


def run_trial(store: TrackingStore, exp: str, pid: str, trial: TrialSpec, objective: float, **meta) -> str:
    kw = {**META, "label": trial.label, **meta}
    rid = store.start_trial(pid, exp, trial, **kw)
    store.finish_trial(rid, result(trial, objective))
    return rid


# ---------------------------------------------------------------- URIs

def test_absolute_uri_makes_relative_sqlite_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_uri("sqlite:///rel/x.db") == f"sqlite:///{tmp_path}/rel/x.db"
    assert absolute_uri("sqlite:///x.db?timeout=5") == f"sqlite:///{tmp_path}/x.db?timeout=5"
    for unchanged in ("sqlite:////abs/x.db", "http://head:5000", "postgresql://u@h/db", "sqlite://",
                      "sqlite:///:memory:"):
        assert absolute_uri(unchanged) == unchanged


def test_default_uri_root_cwd_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    assert default_tracking_uri(tmp_path / "proj") == f"sqlite:///{tmp_path}/proj/mlflow.db"
    assert default_tracking_uri(Path("sub")) == f"sqlite:///{tmp_path}/sub/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://head:5000")
    assert default_tracking_uri(tmp_path) == "http://head:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///db/m.db")
    assert default_tracking_uri() == f"sqlite:///{tmp_path}/db/m.db"


def test_store_uri_survives_chdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = TrackingStore("sqlite:///m.db")
    assert store.uri == f"sqlite:///{tmp_path}/m.db"
    exp = store.ensure_experiment("x")
    (tmp_path / "elsewhere").mkdir()
    os.chdir(tmp_path / "elsewhere")
    assert TrackingStore(store.uri).ensure_experiment("x") == exp
    assert not (tmp_path / "elsewhere" / "m.db").exists()


# ---------------------------------------------------------------- parents

def test_open_parent_resumes_running_then_creates_after_close(store: TrackingStore) -> None:
    exp = store.ensure_experiment("s")
    assert store.ensure_experiment("s") == exp
    first, resumed = store.open_parent("s", "fp1", "tune-a", "name: s\n", {"objective": "score/count"})
    assert resumed is False
    again, resumed = store.open_parent("s", "fp1", "tune-a", "name: s\n", {})
    assert (again, resumed) == (first, True)
    other, resumed = store.open_parent("s", "fp2", "tune-b", "name: s\n", {})
    assert resumed is False and other != first

    rec = store.get_run(first)
    assert rec.tags["eaglesearch.kind"] == "search"
    assert rec.tags["eaglesearch.fingerprint"] == "fp1"
    assert rec.tags["eaglesearch.tune_name"] == "tune-a"
    assert rec.params == {"objective": "score/count"}
    assert rec.name.startswith("s@")
    assert "search_space.yaml" in store.list_artifacts(first)

    store.close_parent(first)
    assert store.get_run(first).status == "FINISHED"
    fresh, resumed = store.open_parent("s", "fp1", "tune-a", "name: s\n", {})
    assert resumed is False and fresh not in (first, other)


def test_latest_parent_prefers_finished(store: TrackingStore) -> None:
    assert store.latest_parent("nothing") is None
    store.ensure_experiment("s")
    assert store.latest_parent("s") is None
    old, _ = store.open_parent("s", "fp", "t1", "", {})
    assert store.latest_parent("s") == old  # only a running one
    store.close_parent(old)
    newer, _ = store.open_parent("s", "fp", "t2", "", {})
    assert store.latest_parent("s") == old  # finished beats a newer running one
    store.close_parent(newer)
    assert store.latest_parent("s") == newer


# ---------------------------------------------------------------- trials

def test_finished_trial_is_found_by_key_across_experiments(store: TrackingStore, parent: tuple[str, str]) -> None:
    exp, pid = parent
    trial = make_trial("clip")
    rid = store.start_trial(pid, exp, trial, **META, label=trial.label)
    assert store.find_finished(trial.key) is None  # still running
    rec = store.get_run(rid)
    assert rec.status == "RUNNING" and rec.tags["eaglesearch.status"] == "running"
    assert rec.tags["mlflow.parentRunId"] == pid and rec.tags["eaglesearch.kind"] == "trial"
    assert rec.params["model.experts"] == "clip" and rec.params == trial.flat_params()
    assert "eaglesearch.added" not in rec.tags
    assert "trial_spec.json" in store.list_artifacts(rid)

    store.finish_trial(rid, result(trial, 0.75, **{"train/loss_final": 1.5}))
    found = store.find_finished(trial.key)
    assert found is not None
    assert (found.status, found.objective, found.run_id, found.key) == ("finished", 0.75, rid, trial.key)
    assert found.metrics["score/count"] == 0.75 and found.metrics["score/color"] == 0.375
    assert found.metrics["train/loss_final"] == 1.5 and found.metrics["objective"] == 0.75
    assert store.get_run(rid).status == "FINISHED"

    # Another search (experiment) sees it too; a newer finished run of the same key wins.
    exp2 = store.ensure_experiment("other")
    pid2, _ = store.open_parent("other", "fp", "tune-o", "", {})
    rid2 = run_trial(store, exp2, pid2, trial, 0.8, search="other")
    found = store.find_finished(trial.key)
    assert found is not None and found.run_id == rid2 and found.objective == 0.8
    assert store.find_finished(make_trial("sam").key) is None


def test_failed_trial_not_found_but_listed(store: TrackingStore, parent: tuple[str, str]) -> None:
    exp, pid = parent
    good, bad = make_trial("clip"), make_trial("clip", "sam")
    run_trial(store, exp, pid, good, 0.5)
    rid = store.start_trial(pid, exp, bad, **{**META, "round": 1, "role": "candidate", "added": "sam"},
                            label=bad.label)
    error = "RuntimeError: CUDA out of memory\n" + "x" * 1000
    store.fail_trial(rid, error)

    assert store.find_finished(bad.key) is None
    rec = store.get_run(rid)
    assert rec.status == "FAILED" and rec.tags["eaglesearch.status"] == "failed"
    assert rec.tags["eaglesearch.error"] == error[:500]
    assert "error.txt" in store.list_artifacts(rid)

    runs = store.trial_runs(pid)
    assert list(runs["label"]) == ["clip", "clip+sam"]  # round 0 before round 1
    assert list(runs["round"]) == [0, 1]
    row = runs.set_index("key").loc[bad.key]
    assert row["status"] == "FAILED" and row["status_tag"] == "failed" and row["added"] == "sam"
    assert row["error"].startswith("RuntimeError: CUDA out of memory")
    assert row["role"] == "candidate" and row["strategy"] == "greedy"
    assert runs.set_index("key").loc[good.key, "objective"] == 0.5
    assert runs.set_index("key").loc[good.key, "param.model.experts"] == "clip"
    assert math.isnan(row["objective"])

    # find_in_parent returns failed ones too (the caller must not run them again under this parent).
    again = store.find_in_parent(pid, bad.key)
    assert again is not None and again.status == "failed" and again.run_id == rid
    assert again.error is not None and again.error.startswith("RuntimeError")


def test_record_cached_copies_final_metrics(store: TrackingStore, parent: tuple[str, str]) -> None:
    exp, pid = parent
    trial = make_trial("clip")
    src_id = store.start_trial(pid, exp, trial, **META, label=trial.label)
    for step, loss in enumerate([3.0, 2.0, 1.0]):
        store.log_metrics(src_id, {"train/loss": loss}, step=step)
    store.finish_trial(src_id, result(trial, 0.6))
    source = store.find_finished(trial.key)
    assert source is not None

    exp2 = store.ensure_experiment("s2")
    pid2, _ = store.open_parent("s2", "fp", "tune-2", "", {})
    cid = store.record_cached(pid2, exp2, trial, source, search="s2", round=2, role="candidate", added="clip",
                              strategy="greedy", label=trial.label)
    rec = store.get_run(cid)
    assert rec.status == "FINISHED"
    assert rec.tags["eaglesearch.status"] == "cached" and rec.tags["eaglesearch.cached_from"] == src_id
    assert rec.tags["eaglesearch.round"] == "2" and rec.tags["mlflow.parentRunId"] == pid2
    assert rec.metrics == source.metrics
    assert store.metric_history(cid, "train/loss") == [(0, 1.0)]  # final value only, not the history
    assert rec.params == trial.flat_params()

    # A cached copy is not itself a source for find_finished, but find_in_parent sees it.
    assert store.find_finished(trial.key).run_id == src_id
    cached = store.find_in_parent(pid2, trial.key)
    assert cached is not None and cached.status == "cached" and cached.run_id == cid and cached.objective == 0.6
    assert store.find_in_parent(pid2, make_trial("sam").key) is None
    assert store.find_in_parent(pid, trial.key).run_id == src_id


def test_running_duplicate_is_killed_and_listed_once(store: TrackingStore, parent: tuple[str, str]) -> None:
    exp, pid = parent
    trial = make_trial("clip")
    stale = store.start_trial(pid, exp, trial, **META, label=trial.label)  # worker dies here
    assert store.find_in_parent(pid, trial.key) is None  # running is not done
    fresh = run_trial(store, exp, pid, trial, 0.9)
    assert store.get_run(stale).status == "KILLED"
    runs = store.trial_runs(pid)
    assert len(runs) == 1
    assert runs.loc[0, "run_id"] == fresh and runs.loc[0, "objective"] == 0.9
    assert store.find_in_parent(pid, trial.key).run_id == fresh


def test_the_lookup_names_leftover_running_runs_and_start_trial_kills_them(store: TrackingStore,
                                                                           parent: tuple[str, str]) -> None:
    """What the worker does: one lookup, whose leftovers ``start_trial`` marks KILLED without querying again."""
    exp, pid = parent
    trial = make_trial("clip")
    stale = store.start_trial(pid, exp, trial, **META, label=trial.label)  # worker dies here
    found = store.lookup_trial(pid, trial.key)
    assert found.running == (stale,) and found.in_parent is None and found.finished is None
    fresh = store.start_trial(pid, exp, trial, **META, label=trial.label, leftovers=found.running)
    assert store.get_run(stale).status == "KILLED"
    store.finish_trial(fresh, result(trial, 0.7), history=[(0, 2.0), (5, 1.5)])
    assert store.lookup_trial(pid, trial.key).running == ()
    assert store.metric_history(fresh, "train/loss") == [(0, 2.0), (5, 1.5)]  # the curve came with the result
    assert store.find_in_parent(pid, trial.key).objective == 0.7


def test_batches_respect_mlflows_limits_and_put_the_tags_last() -> None:
    from mlflow.entities import Metric

    from eaglesearch.tracking.batches import as_params, as_tags, pack

    metrics = [Metric("m", 1.0, 0, i) for i in range(2500)]
    batches = list(pack(metrics, as_params({f"p{i}": "v" for i in range(150)}), as_tags({"status": "finished"})))
    # at most 100 params and 1000 entities a request; the status tag only with the last one
    assert [(len(m), len(p), len(t)) for m, p, t in batches] == [(899, 100, 0), (949, 50, 0), (652, 0, 1)]
    assert list(pack(tags=as_tags({"a": "b"}))) == [([], [], as_tags({"a": "b"}))]
    assert list(pack()) == []


def test_trial_runs_keeps_latest_completed_of_a_key(store: TrackingStore, parent: tuple[str, str]) -> None:
    exp, pid = parent
    trial = make_trial("clip")
    first = run_trial(store, exp, pid, trial, 0.1)
    second = run_trial(store, exp, pid, trial, 0.2)
    runs = store.trial_runs(pid)
    assert list(runs["run_id"]) == [second]
    assert store.get_run(first).status == "FINISHED"


def test_metric_history_with_steps(store: TrackingStore, parent: tuple[str, str]) -> None:
    exp, pid = parent
    trial = make_trial("clip")
    rid = store.start_trial(pid, exp, trial, **META, label=trial.label)
    for step in (0, 10, 20):
        store.log_metrics(rid, {"train/loss": 5.0 - step / 10, "train/lr": 0.1}, step=step)
    store.finish_trial(rid, result(trial, 0.5, **{"train/loss_final": 3.0}))
    assert store.metric_history(rid, "train/loss") == [(0, 5.0), (10, 4.0), (20, 3.0)]
    assert store.metric_history(rid, "train/loss_final") == [(0, 3.0)]
    assert store.metric_history(rid, "nope") == []
    assert store.find_finished(trial.key).metrics["train/loss"] == 3.0  # latest step


def test_long_params_are_truncated_and_batched(store: TrackingStore, parent: tuple[str, str]) -> None:
    exp, pid = parent
    trial = make_trial("clip")
    rid = store.start_trial(pid, exp, trial, **META, label=trial.label)
    params = {f"p{i:03d}": "v" * (7000 if i == 0 else 3) for i in range(250)}
    store._log_all(rid, params=params)  # the same path start_trial uses, with more than one batch
    rec = store.get_run(rid)
    assert len(rec.params["p000"]) == 6000 and rec.params["p249"] == "vvv"
    assert len([k for k in rec.params if k.startswith("p")]) == 250


def test_empty_parent_has_empty_frame(store: TrackingStore, parent: tuple[str, str]) -> None:
    _, pid = parent
    runs = store.trial_runs(pid)
    assert len(runs) == 0
    assert {"run_id", "status", "key", "round", "label", "status_tag", "error"} <= set(runs.columns)


def test_source_run_of_mixed_cached_and_trained_rows() -> None:
    """A frame with cached and trained trials has NaN (truthy) in cached_from on the trained rows."""
    import pandas as pd

    from eaglesearch.tracking import source_run_id

    frame = pd.DataFrame([{"run_id": "own", "cached_from": None}, {"run_id": "copy", "cached_from": "builder"}])
    rows = [row for _, row in frame.iterrows()]
    assert pd.isna(rows[0]["cached_from"]) and bool(rows[0]["cached_from"])  # the trap: NaN is truthy
    assert [source_run_id(r) for r in rows] == ["own", "builder"]
    assert source_run_id({"run_id": "solo"}) == "solo"


def test_record_choices_tags_adopted_trials_and_the_stop_reason(store: TrackingStore, parent: tuple[str, str]) -> None:
    exp, pid = parent
    base, better, extra = make_trial("clip"), make_trial("clip", "sam"), make_trial("clip", "sam", "convnext")
    run_trial(store, exp, pid, base, 0.5)
    run_trial(store, exp, pid, better, 0.7, round=1, role="candidate", added="sam")
    run_trial(store, exp, pid, extra, 0.71, round=2, role="candidate", added="convnext")
    store.record_choices(pid, [base.key, better.key], "no gain")
    runs = store.trial_runs(pid).set_index("key")
    assert runs.loc[base.key, "chosen_tag"] == "true" and runs.loc[better.key, "chosen_tag"] == "true"
    assert runs.loc[extra.key, "chosen_tag"] != "true"
    assert store.get_run(pid).tags["eaglesearch.stopped"] == "no gain"
