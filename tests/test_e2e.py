"""End to end through the real CLI: validate/plan/run/report on tiny searches, with Ray and inline executors.

Each test writes a temp project (recipe + search space) and its own MLflow store, so tests are independent.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from eaglesearch.tracking import TrackingStore
from tests.e2e_helpers import cli, greedy_space, make_project, tiny_recipe
from tests.support import faulty_expert, warm_cli

pytestmark = pytest.mark.slow


def store_of(root: Path) -> TrackingStore:
    return TrackingStore(f"sqlite:///{root}/mlflow.db")


def runs_of(root: Path, search: str) -> pd.DataFrame:
    store = store_of(root)
    parent = store.latest_parent(search)
    assert parent is not None
    return store.trial_runs(parent)


def leaderboard(root: Path, search: str) -> pd.DataFrame:
    """The trials' rows of the leaderboard (the answer-prior baseline row is checked in tests/test_world_e2e.py)."""
    board = pd.read_csv(root / "reports" / search / "leaderboard.csv")
    return board[board["candidate"] != "answer prior"].reset_index(drop=True)


def test_invalid_space_starts_nothing(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"bad": greedy_space("bad", ["convnext", "nosuchexpert"])})
    for command in ("validate", "plan", "run"):
        proc = cli(root, command, "search_spaces/bad.yaml")
        assert proc.returncode == 2, proc.stderr
        assert "strategy.candidates[1]" in proc.stderr and "nosuchexpert" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (root / "mlflow.db").exists()
    assert not (root / ".eaglesearch" / "ray").exists()


def test_inline_greedy_with_failing_candidate(tmp_path: Path) -> None:
    """A trial that raises is a FAILED run with its error; the search completes and the report marks it."""
    # The failure-injection encoder is declared as a user declares theirs, its module beside the project.
    declared = yaml.safe_dump({"experts": {faulty_expert.NAME: faulty_expert.copy_beside(tmp_path)}}, sort_keys=False)
    space = greedy_space("inline-fail", ["{name: convnext, resolution: 128}", faulty_expert.NAME]) + declared
    root = make_project(tmp_path, {"g": space})
    proc = cli(root, "run", "search_spaces/g.yaml", "--executor", "inline", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = runs_of(root, "inline-fail")
    by_label = {r["label"]: r for _, r in runs.iterrows()}
    faulty = next(r for label, r in by_label.items() if "faulty" in label)
    assert faulty["status"] == "FAILED" and faulty["status_tag"] == "failed"
    assert "injected failure" in faulty["error"]
    # Round 1 (convnext vs faulty) picks convnext; round 2 has only faulty left, which fails: 4 trials in all.
    assert sorted(runs["round"].tolist()) == [0, 1, 1, 2]
    board = leaderboard(root, "inline-fail")
    failed_rows = board[board["status"] == "failed"]
    assert len(failed_rows) == 2 and failed_rows["rank"].isna().all()
    assert "injected failure" in (root / "reports" / "inline-fail" / "leaderboard.md").read_text()
    assert any(line.startswith("round 1: adopted ") and "convnext" in line for line in proc.stdout.splitlines()), \
        proc.stdout
    # Each candidate's gain comes with its paired interval over the same items (shown, not deciding: no adopt).
    rounds = (root / "reports" / "inline-fail" / "rounds.md").read_text()
    assert "adoption rule: best" in rounds and re.search(r"\[[+-]\d\.\d{3}, [+-]\d\.\d{3}\] 95%", rounds), rounds
    assert "| adopted" in rounds and "| failed" in rounds
    assert re.search(r"round 1: adopted \S+ [\d.]+ \(gain [+-][\d.]+ \[[+-][\d.]+, [+-][\d.]+\] over clip",
                     proc.stdout), proc.stdout

    # Predictions persisted with every trial re-score offline to the identical numbers (and intervals).
    from eaglesearch.app.rescore import rescore_search

    rescored = rescore_search(store_of(root), "inline-fail")
    assert len(rescored) == 2 and all(r.identical for r in rescored), [r.differences for r in rescored]
    assert all("score_low/count" in r.rescored and "objective_high" in r.rescored for r in rescored), \
        [sorted(r.rescored) for r in rescored]
    cli_rescore = cli(root, "rescore", "inline-fail")
    assert cli_rescore.returncode == 0 and "identical" in cli_rescore.stdout
    # Scores come with 95% intervals, and the two finished trials get a paired test for the tie column.
    ranked = board[board["rank"].notna()]
    assert (ranked["objective_low"] <= ranked["objective"]).all()
    assert (ranked["objective"] <= ranked["objective_high"]).all()
    assert ranked["tie"].iloc[0] == "1" and ranked["tie"].iloc[1] in {"2", "=1"}


GREEDY_RAY = greedy_space("ray-greedy", ["{name: convnext, resolution: 128}", "sam"])


@pytest.fixture(scope="module")
def ray_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame, str]:
    """One uninterrupted greedy search on Ray (4 trials): its project, child runs, leaderboard and ``--json`` event
    stream. The rerun test runs it again; the SIGKILL test compares its own resumed search with this table."""
    root = make_project(tmp_path_factory.mktemp("ray"), {"g": GREEDY_RAY})
    first = cli(root, "run", "search_spaces/g.yaml", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    return root, runs_of(root, "ray-greedy"), leaderboard(root, "ray-greedy"), first.stdout


def test_ray_run_then_rerun_trains_nothing(ray_search) -> None:
    root, runs, table, stream = ray_search
    assert len(runs) == 4 and set(runs["status_tag"]) == {"finished"}
    # Stage progress travels from the Ray workers to the driver's event stream: every trained trial reports the
    # last step of its final stage (Tune intermediate reports forwarded by the searcher adapter).
    events = [json.loads(line) for line in stream.splitlines() if line.startswith("{")]
    stages = [e for e in events if e["event"] == "stage_progress"]
    assert {e["key"] for e in stages if e["step"] == e["steps"] and e["stage_index"] == e["stage_count"]} == \
        set(runs["key"])

    second = cli(root, "run", "search_spaces/g.yaml", "--quiet")
    assert second.returncode == 0, second.stdout + second.stderr
    again = runs_of(root, "ray-greedy")
    assert len(again) == 4 and set(again["status_tag"]) == {"cached"}
    pd.testing.assert_frame_equal(
        leaderboard(root, "ray-greedy").drop(columns=["status", "train_s", "trial_s"]),
        table.drop(columns=["status", "train_s", "trial_s"]),
    )
    # Nothing trained: every child copies a run of the first invocation.
    assert set(again["cached_from"]) == set(runs["run_id"])
    # Gains come with paired intervals under Ray too, cached runs paired from the runs they were copied from.
    rounds = (root / "reports" / "ray-greedy" / "rounds.md").read_text()
    assert len(re.findall(r"\[[+-]\d\.\d{3}, [+-]\d\.\d{3}\] 95%", rounds)) == 3, rounds  # 2 + 1 candidates

    report = cli(root, "report", "ray-greedy")
    assert report.returncode == 0 and "ray-greedy" in report.stdout


def trial_rows(db: Path) -> list[tuple[str, str, str]]:
    """(key, MLflow status, eaglesearch status tag) of every child run, straight from the sqlite file."""
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "select t.value, r.status, s.value from runs r join tags t on t.run_uuid = r.run_uuid and "
            "t.key = 'eaglesearch.key' join tags s on s.run_uuid = r.run_uuid and s.key = 'eaglesearch.status'"
        ).fetchall()
    finally:
        con.close()


def trained_runs_per_key(db: Path) -> dict[str, int]:
    """Count every child run that actually trained (finished, failed or killed mid-way), per trial key."""
    counts: dict[str, int] = {}
    for key, _status, tag in trial_rows(db):
        if tag != "cached":
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_sigkill_mid_search_then_resume_matches_uninterrupted(tmp_path: Path, ray_search) -> None:
    """The same search as ``ray_search``, SIGKILLed (driver, Ray and trials) after two trials finished, then run
    again: nothing finished trains twice and the table equals the uninterrupted one."""
    root = make_project(tmp_path / "kill", {"g": GREEDY_RAY})
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db",
               EAGLESEARCH_HOME=str(root / ".eaglesearch"))
    proc = warm_cli.popen(["run", "search_spaces/g.yaml", "--quiet"], root, env, output=root / "run.log",
                          start_new_session=True)
    deadline = time.monotonic() + 300
    finished_before: set[str] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if (root / "mlflow.db").exists():
            try:
                finished_before = {k for k, _, tag in trial_rows(root / "mlflow.db") if tag == "finished"}
            except sqlite3.OperationalError:
                continue
            if len(finished_before) >= 2:
                break
    assert proc.poll() is None, "the search finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    resumed = cli(root, "run", "search_spaces/g.yaml", "--quiet")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    counts = trained_runs_per_key(root / "mlflow.db")
    assert len(counts) == 4
    assert max(counts.values()) <= 2, counts  # Tune is at-least-once: a trial killed mid-way may train twice
    assert all(counts[k] == 1 for k in finished_before), (finished_before, counts)  # completed: never again
    cols = ["rank", "candidate", "round", "objective", "delta", "params", "key"]
    resumed_table = leaderboard(root, "ray-greedy")
    mine = resumed_table[cols + [c for c in resumed_table if c.startswith("score/")]]
    theirs = ray_search[2][mine.columns]
    pd.testing.assert_frame_equal(mine, theirs)


def test_plan_reports_trials_and_measured_cost(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"g": greedy_space("planned", ["{name: convnext, resolution: 128}", "sam"])})
    proc = cli(root, "plan", "search_spaces/g.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "at most 4 trials (round 0: 1, round 1: 2, round 2: 1)" in proc.stdout
    for label in ("clip@64", "clip@64+convnext@128", "clip@64+sam@"):
        assert label in proc.stdout
    assert not (root / "mlflow.db").exists()  # planning records nothing


def test_ui_serves_the_store(tmp_path: Path) -> None:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    proc = subprocess.Popen([sys.executable, "-m", "eaglesearch.cli", "ui", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert response.status == 200
                    return
            except OSError:
                time.sleep(1.0)
        pytest.fail("the MLflow UI did not answer /health within 120 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


FUSION_RECIPE = tiny_recipe("tiny_fixed_batch", train_per_task=4, eval_per_task=4,
                            train="{steps: 10, batch_size: 8, lr: 1.0e-3, warmup_ratio: 0.0, log_every: 1}",
                            eval="{batch_size: 8, max_new_tokens: 2}")

FUSION_SPACE = """\
name: fusions
recipe: experiments/tiny_fixed_batch.yaml
strategy:
  kind: grid
  factors:
    model.fusion: [channel_concat, sequence_append, llava_hr, mini_gemini, deformable]
    experts: [[{name: clip, resolution: 64}, {name: convnext, resolution: 128}]]
  baseline: {model.fusion: channel_concat}
"""


def test_every_fusion_trains_through_the_trial_path_and_reports_cost(tmp_path: Path) -> None:
    """8 training samples at batch 8: every step sees the same batch, so the loss must go down for each fusion."""
    root = make_project(tmp_path, {"f": FUSION_SPACE})
    (root / "experiments" / "tiny_fixed_batch.yaml").write_text(FUSION_RECIPE)
    proc = cli(root, "run", "search_spaces/f.yaml", "--executor", "inline", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = runs_of(root, "fusions")
    assert len(runs) == 5 and set(runs["status_tag"]) == {"finished"}
    for _, run in runs.iterrows():
        assert run["train/loss_final"] < run["train/loss_first"], run["label"]
    board = leaderboard(root, "fusions")
    assert board["vision_gflops"].notna().all() and board["gflops"].notna().all()
    assert board["vision_gflops"].nunique() == 5  # each fusion costs something different, measured
    by_fusion = {row["param.model.fusion"]: row for _, row in runs.iterrows()}
    assert by_fusion["sequence_append"]["cost/visual_tokens"] == 2 * by_fusion["channel_concat"]["cost/visual_tokens"]
    assert by_fusion["llava_hr"]["cost/params_fusion"] > 0 and by_fusion["channel_concat"]["cost/params_fusion"] == 0
