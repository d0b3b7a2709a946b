"""A grid search's ``baseline:`` reaches ``eaglesearch report`` through the record alone: the parent run logs the
baseline trial's key, so the rebuilt leaderboard keeps its delta column (no parameter written by hand)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from e2e_helpers import cli, make_project, tiny_recipe

RECIPE = tiny_recipe("tiny_baseline", train_per_task=4, eval_per_task=4,
                     train="{steps: 2, batch_size: 8, lr: 5.0e-4, warmup_ratio: 0.0, log_every: 1}",
                     eval="{batch_size: 8, max_new_tokens: 2}")

# The baseline is the second combination, so the report cannot get it right by taking the first row.
SPACE = """\
name: baseline-grid
recipe: experiments/tiny_baseline.yaml
overrides:
  model: {experts: [{name: clip, resolution: 64}]}
strategy:
  kind: grid
  factors:
    train.lr: [5.0e-4, 1.0e-3]
  baseline: {train.lr: 1.0e-3}
resources: {cpus_per_trial: 1}
"""


@pytest.mark.slow
def test_report_of_a_grid_search_keeps_the_baseline_delta(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"g": SPACE})
    (root / "experiments" / "tiny_baseline.yaml").write_text(RECIPE)
    ran = cli(root, "run", "search_spaces/g.yaml", "--executor", "inline", "--quiet")
    assert ran.returncode == 0, ran.stdout + ran.stderr

    from eaglesearch.model.validate import load_checked_search
    from eaglesearch.tracking import TrackingStore

    factory = load_checked_search(root / "search_spaces" / "g.yaml").factory
    by_lr = {lr: factory.make(assignments={"train.lr": lr}).key for lr in (5.0e-4, 1.0e-3)}
    store = TrackingStore(f"sqlite:///{root}/mlflow.db")
    parent = store.get_run(store.latest_parent("baseline-grid"))
    assert sorted(store.trial_runs(parent.run_id)["key"]) == sorted(by_lr.values())
    assert parent.params["baseline_key"] == by_lr[1.0e-3]

    (root / "reports").rename(root / "reports_from_run")
    rebuilt = cli(root, "report", "baseline-grid")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    board = pd.read_csv(root / "reports" / "baseline-grid" / "leaderboard.csv")
    board = board[board["candidate"] != "answer prior"]
    assert board["delta"].notna().all()
    base = board[board["key"] == by_lr[1.0e-3]].iloc[0]
    other = board[board["key"] == by_lr[5.0e-4]].iloc[0]
    assert base["delta"] == 0.0
    assert math.isclose(other["delta"], other["objective"] - base["objective"], abs_tol=1e-9)
    assert f"`{by_lr[1.0e-3]}`" in (root / "reports" / "baseline-grid" / "leaderboard.md").read_text()
