"""The tiny world end to end: a search on the pretrained recipe loads the shipped parts (trains none of them),
records them as ``pretrain`` stage runs, and every report carries the ``answer prior`` row."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import csv
import textwrap
from pathlib import Path

import pytest
from e2e_helpers import cli

from eaglesearch.tracking import TrackingStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_world_search_uses_shipped_parts_and_reports_the_answer_prior(tmp_path: Path) -> None:
    (tmp_path / "search_spaces").mkdir()
    (tmp_path / "search_spaces" / "w.yaml").write_text(textwrap.dedent(f"""\
        name: world-smoke
        recipe: {ROOT / "experiments" / "tiny_world.yaml"}
        overrides:
          data: {{synthetic: {{train_per_task: 16, eval_per_task: 8}}}}
          train: {{stages: [{{name: sft, steps: 6, batch_size: 8, log_every: 2}}]}}
        strategy: {{kind: grid, factors: {{experts: [[clip, sam]]}}}}
        resources: {{cpus_per_trial: 2, max_concurrent_trials: 1, max_failures: 0}}
        """))
    plan = cli(tmp_path, "plan", "search_spaces/w.yaml", "--no-measure")
    assert plan.returncode == 0, plan.stderr
    assert "pretrained components: 3 (3 shipped with the package, 0 in the artifact store, 0 to pretrain" in plan.stdout
    done = cli(tmp_path, "run", "search_spaces/w.yaml", "--executor", "inline", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]

    store = TrackingStore(f"sqlite:///{tmp_path}/mlflow.db")
    stages = store.stage_runs("world-smoke")
    pretrain = stages[stages["stage"] == "pretrain"]
    assert sorted(pretrain["expert"]) == ["clip", "lm", "sam"]
    assert set(pretrain["status"]) == {"reused"}  # shipped: nothing pretrained here
    assert not (tmp_path / ".eaglesearch" / "artifacts" / "tiny_expert").exists()

    with (tmp_path / "reports" / "world-smoke" / "leaderboard.csv").open() as f:
        rows = {r["candidate"]: r for r in csv.DictReader(f)}
    prior = rows["answer prior"]
    assert prior["status"] == "baseline" and prior["rank"] == ""
    scores = [float(v) for k, v in prior.items() if k.startswith("score/")]
    assert len(scores) == 3 and abs(float(prior["objective"]) - sum(scores) / 3) < 1e-9  # count, detail, ocr
    assert "answer prior" in (tmp_path / "reports" / "world-smoke" / "leaderboard.md").read_text()
    parent = store.get_run(store.latest_parent("world-smoke"))
    assert abs(parent.metrics["answer_prior/objective"] - float(prior["objective"])) < 1e-9
