"""Searches with Eagle's pre-alignment: each expert's stage-1 artifact is trained exactly once, whatever the rounds,
trials, concurrency or searches; MLflow shows a nested run per stage with its loss curve."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from eaglesearch.artifacts import ArtifactStore
from eaglesearch.tracking import TrackingStore
from eaglesearch.train.stages import PREALIGNED
from tests.e2e_helpers import PREALIGN_STAGES, cli, greedy_space, tiny_recipe

pytestmark = pytest.mark.slow

RECIPE = tiny_recipe("tiny_test", train=PREALIGN_STAGES, max_length=160)


def project(root: Path, spaces: dict[str, str]) -> Path:
    (root / "experiments").mkdir(parents=True)
    (root / "experiments" / "tiny_test.yaml").write_text(RECIPE)
    (root / "search_spaces").mkdir()
    for name, body in spaces.items():
        (root / "search_spaces" / f"{name}.yaml").write_text(body)
    return root


def prealign_runs(store: TrackingStore, search: str | None = None):
    runs = store.stage_runs(search)
    return runs[runs["stage"] == "prealign"]


def test_greedy_search_trains_each_experts_prealignment_once(tmp_path: Path) -> None:
    # Greedy from clip over {convnext, sam}, two rounds: 4 trials, 1 + 2 + 2 + 3 = 8 per-expert stage uses, k = 3.
    greedy = greedy_space("prealign-greedy", ["convnext", "sam"], max_rounds=2)
    # A second search (another SFT learning rate) over the same experts: new trials, no new pre-alignment.
    other = greedy_space("prealign-other", ["convnext"], max_rounds=1) + \
        "overrides: {train: {stages: {sft: {lr: 1.0e-3}}}}\n"
    # A third search mixing trials cached from the first (clip, clip+sam) with a new one (clip+dinov2).
    mixed = greedy_space("prealign-mixed", ["sam", "dinov2"], max_rounds=1)
    root = project(tmp_path, {"g": greedy, "o": other, "m": mixed})

    first = cli(root, "run", "search_spaces/g.yaml", "--executor", "inline", "--quiet")
    assert first.returncode == 0, first.stdout + first.stderr
    artifacts = ArtifactStore(root / ".eaglesearch" / "artifacts")
    store = TrackingStore(f"sqlite:///{root}/mlflow.db")
    assert artifacts.count(PREALIGNED) == 3

    runs = prealign_runs(store, "prealign-greedy")
    assert len(runs) == 8  # every trial records every per-expert stage it used
    trained = runs[runs["status"] == "trained"]
    assert sorted(trained["expert"]) == ["clip", "convnext", "sam"]
    assert set(trained["artifact_key"]) == set(artifacts.list(PREALIGNED))
    assert (runs["status"] == "reused").sum() == 5

    # One nested run per stage under each trial, each with its loss curve.
    parent = store.latest_parent("prealign-greedy")
    trials = store.trial_runs(parent)
    assert len(trials) == 4
    pair = trials[trials["label"].str.count(r"\+") == 1].iloc[0]
    nested = store.stage_runs("prealign-greedy", trial_run_id=pair["run_id"]).sort_values(["index", "expert"])
    assert list(nested["stage"]) == ["prealign", "prealign", "align", "sft"]
    for run_id in nested["run_id"]:
        assert len(store.metric_history(run_id, "train/loss")) >= 2
    assert all(trials["stages/trained"] + trials["stages/reused"] == trials["label"].str.count(r"\+") + 3)
    report = (root / "reports" / "prealign-greedy" / "stages.md").read_text()
    assert "3 used by this search, 3 trained here, 5 uses served from the artifact store" in report
    assert report.count("| reused ") == 5 and report.count(" / clip ") == 4

    second = cli(root, "run", "search_spaces/o.yaml", "--executor", "inline", "--quiet")
    assert second.returncode == 0, second.stdout + second.stderr
    assert artifacts.count(PREALIGNED) == 3
    again = prealign_runs(store, "prealign-other")
    assert len(again) == 3 and set(again["status"]) == {"reused"}
    assert (prealign_runs(store)["status"] == "trained").sum() == 3  # over both searches

    third = cli(root, "run", "search_spaces/m.yaml", "--executor", "inline", "--quiet")
    assert third.returncode == 0, third.stdout + third.stderr  # ranks and ties over cached + trained trials
    assert artifacts.count(PREALIGNED) == 4
    new = prealign_runs(store, "prealign-mixed")
    assert sorted(new[new["status"] == "trained"]["expert"]) == ["dinov2"]  # the cached trials log no stages
    statuses = store.trial_runs(store.latest_parent("prealign-mixed"))["status_tag"]
    assert sorted(statuses) == ["cached", "cached", "finished"]


def test_concurrent_ray_trials_needing_one_artifact_train_it_once(tmp_path: Path) -> None:
    space = textwrap.dedent("""\
        name: prealign-race
        recipe: experiments/tiny_test.yaml
        strategy:
          kind: grid
          factors:
            experts: [[{name: clip, resolution: 64}], [{name: clip, resolution: 64}, convnext]]
        resources: {cpus_per_trial: 1, max_concurrent_trials: 2, max_failures: 1}
        """)
    root = project(tmp_path, {"race": space})
    proc = cli(root, "run", "search_spaces/race.yaml", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = TrackingStore(f"sqlite:///{root}/mlflow.db")
    runs = prealign_runs(store, "prealign-race")
    assert len(runs) == 3
    assert sorted(runs[runs["status"] == "trained"]["expert"]) == ["clip", "convnext"]
    assert ArtifactStore(root / ".eaglesearch" / "artifacts").count(PREALIGNED) == 2
