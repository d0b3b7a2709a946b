"""Ranked tables, markdown rendering and the end-to-end report on a throwaway sqlite store."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest

from eaglesearch.report import ranked_table, round_table, to_csv, to_markdown, write_report
from eaglesearch.spec import ExpertSpec, ModelSpec, TrialResult, TrialSpec
from eaglesearch.tracking import TrackingStore

NAN = float("nan")

EXPECTED_COLUMNS = ["rank", "candidate", "round", "status", "score/color", "score/count", "objective", "objective_low",
                    "objective_high", "delta",
                    "params", "trainable", "visual_tokens", "vision_gflops", "gflops", "train_s", "trial_s", "key",
                    "error"]


def runs_frame() -> pd.DataFrame:
    """What ``TrackingStore.trial_runs`` returns, by hand: base, five candidates (a tie, a failed one)."""
    rows = [
        # label,            round, status_tag, objective, error
        ("clip",              0, "finished", 0.50, None),
        ("clip+sam",          1, "finished", 0.70, None),
        ("clip+convnext",     1, "cached",   0.70, None),
        ("clip+pix2struct",   1, "finished", 0.80, None),
        ("clip+eva",          1, "failed",   NAN,  "RuntimeError: CUDA out of memory\nTraceback ..."),
        ("clip+det",          1, "finished", 0.60, None),
    ]
    data = []
    for i, (label, rnd, status, obj, error) in enumerate(rows):
        data.append({
            "run_id": f"r{i}", "status": "FAILED" if status == "failed" else "FINISHED", "key": f"k{i}",
            "round": rnd, "role": "base" if rnd == 0 else "candidate", "label": label, "strategy": "greedy",
            "status_tag": status, "error": error, "cached_from": None, "param.model.grid": "8",
            "score/count": obj, "score/color": obj / 2 if not math.isnan(obj) else NAN, "objective": obj,
            "cost/params_total": 1_000_000.0 + i, "cost/params_trainable": 500.0, "cost/visual_tokens": 64.0,
            "cost/vision_gflops": 0.5 + i, "cost/gflops_per_sample": 2.0 + i,
            "train/wall_s": 12.5, "cost/wall_s": 20.25, "train/loss_final": 1.0,
        })
    return pd.DataFrame(data)


def test_ranked_table_ranks_ties_failed_and_delta() -> None:
    table = ranked_table(runs_frame())
    assert list(table.columns) == EXPECTED_COLUMNS
    assert list(table["candidate"]) == ["clip+pix2struct", "clip+convnext", "clip+sam", "clip+det", "clip",
                                        "clip+eva"]
    assert list(table["rank"].iloc[:5]) == [1, 2, 2, 4, 5]  # competition ranking; tie ordered by label
    assert pd.isna(table["rank"].iloc[5])  # failed: no rank, at the bottom
    assert list(table["status"]) == ["finished", "cached", "finished", "finished", "finished", "failed"]
    assert table["delta"].iloc[:5].round(6).tolist() == [0.3, 0.2, 0.2, 0.1, 0.0]  # vs the round-0 row
    assert math.isnan(table["delta"].iloc[5])
    assert table.attrs["baseline_key"] == "k0"
    assert table["error"].iloc[5] == "RuntimeError: CUDA out of memory"  # first line only
    assert table["error"].iloc[:5].isna().all()
    assert table["params"].iloc[0] == 1_000_003 and str(table["params"].dtype) == "Int64"
    assert table["train_s"].iloc[0] == 12.5 and table["trial_s"].iloc[0] == 20.25
    assert table["score/color"].iloc[0] == pytest.approx(0.4)


def test_ranked_table_baseline_key_and_min_mode() -> None:
    runs = runs_frame()
    table = ranked_table(runs, baseline_key="k5")  # clip+det, 0.60
    assert table.set_index("key").loc["k3", "delta"] == pytest.approx(0.2)
    assert table.set_index("key").loc["k0", "delta"] == pytest.approx(-0.1)

    low = ranked_table(runs, mode="min")
    assert list(low["candidate"]) == ["clip", "clip+det", "clip+convnext", "clip+sam", "clip+pix2struct",
                                      "clip+eva"]
    assert list(low["rank"].iloc[:5]) == [1, 2, 3, 3, 5]

    by_acc = ranked_table(runs, objective="score/color")
    assert by_acc["objective"].iloc[0] == pytest.approx(0.4)

    with pytest.raises(ValueError, match="mode"):
        ranked_table(runs, mode="best")


def test_ranked_table_without_round_zero_has_no_delta() -> None:
    runs = runs_frame()
    runs = runs[runs["round"] == 1]
    table = ranked_table(runs)
    assert table["delta"].isna().all() and table.attrs["baseline_key"] is None
    assert list(table["rank"].iloc[:4]) == [1, 2, 2, 4]


def test_round_table_marks_choice_and_gain() -> None:
    runs = runs_frame()
    extra = runs.iloc[[3]].copy()  # round 2 builds on the round-1 winner
    extra[["run_id", "key", "round", "label", "objective"]] = ["r9", "k9", 2, "clip+pix2struct+sam", 0.85]
    rounds = round_table(pd.concat([runs, extra], ignore_index=True))
    assert list(rounds.columns) == ["round", "candidate", "added", "status", "objective", "gain", "chosen", "key"]
    chosen = rounds[rounds["chosen"] == "✓"]
    assert list(chosen["candidate"]) == ["clip", "clip+pix2struct", "clip+pix2struct+sam"]
    r1 = rounds[rounds["round"] == 1]
    assert r1["candidate"].iloc[0] == "clip+pix2struct"  # best first within a round
    assert r1.set_index("candidate").loc["clip+sam", "gain"] == pytest.approx(0.2)  # vs round 0's 0.5
    assert rounds.set_index("candidate").loc["clip+pix2struct+sam", "gain"] == pytest.approx(0.05)
    assert math.isnan(rounds.set_index("candidate").loc["clip", "gain"])


def test_round_table_follows_the_recorded_choices_of_a_stopped_search() -> None:
    runs = runs_frame()
    extra = runs.iloc[[3]].copy()  # round 2 was run, but gained too little: the strategy stopped, adopting nothing
    extra[["run_id", "key", "round", "label", "objective"]] = ["r9", "k9", 2, "clip+pix2struct+sam", 0.81]
    runs = pd.concat([runs, extra], ignore_index=True)
    runs["chosen_tag"] = [None] * len(runs)
    runs.loc[runs["key"].isin(["k0", "k3"]), "chosen_tag"] = "true"
    rounds = round_table(runs)
    chosen = rounds[rounds["chosen"] == "✓"]
    assert list(chosen["candidate"]) == ["clip", "clip+pix2struct"]  # not round 2's best, which the guess would mark
    assert rounds.set_index("candidate").loc["clip+pix2struct+sam", "gain"] == pytest.approx(0.01)


def test_to_markdown_exact() -> None:
    df = pd.DataFrame({
        "rank": pd.array([1, None], dtype="Int64"),
        "candidate": ["clip", "a|b"],
        "objective": [0.5, NAN],
        "params": [1200, 7],
    })
    expected = (
        "| rank | candidate | objective | params |\n"
        "|-----:|:----------|----------:|-------:|\n"
        "|    1 | clip      |    0.5000 |   1200 |\n"
        "|    – | a\\|b      |         – |      7 |\n"
    )
    assert to_markdown(df) == expected
    two = "| objective |\n|----------:|\n|      0.50 |\n|         – |\n"
    assert to_markdown(df[["objective"]], floatfmt=".2f") == two


def test_to_csv_is_plain() -> None:
    df = pd.DataFrame({"rank": pd.array([1, None], dtype="Int64"), "x": [0.25, NAN], "s": ["a,b", None]})
    assert to_csv(df) == 'rank,x,s\n1,0.25,"a,b"\n,,\n'


# ---------------------------------------------------------------- end to end on a temp store

def _trial(*names: str) -> TrialSpec:
    return TrialSpec(model=ModelSpec(experts=tuple(ExpertSpec(name=n) for n in names)))


def _record_search(store: TrackingStore, params: dict[str, str]) -> tuple[str, dict[str, str]]:
    exp = store.ensure_experiment("demo")
    pid, _ = store.open_parent("demo", "fp", "demo-fp", "name: demo\n", params)
    keys = {}
    plan = [(_trial("clip"), 0, "base", None, 0.50), (_trial("clip", "sam"), 1, "candidate", "sam", 0.70),
            (_trial("clip", "eva"), 1, "candidate", "eva", None)]
    for trial, rnd, role, added, objective in plan:
        rid = store.start_trial(pid, exp, trial, search="demo", round=rnd, role=role, added=added,
                                strategy="greedy", label=trial.label)
        keys[trial.label] = trial.key
        if objective is None:
            store.fail_trial(rid, "ValueError: expert 'eva' has no tiny preset\nTraceback (most recent call last)")
        else:
            metrics = {"score/count": objective, "score/color": objective, "cost/params_total": 4096.0,
                       "cost/visual_tokens": 64.0, "cost/wall_s": 3.5, "train/wall_s": 2.5}
            store.finish_trial(rid, TrialResult(key=trial.key, status="finished", objective=objective,
                                                metrics=metrics))
    store.close_parent(pid)
    return pid, keys


def test_write_report_end_to_end(tmp_path: Path) -> None:
    store = TrackingStore(f"sqlite:///{tmp_path}/mlflow.db")
    pid, keys = _record_search(store, {"objective": "objective", "mode": "max", "strategy": "greedy"})
    out = tmp_path / "reports"
    paths = write_report(store, "demo", out)

    assert paths.parent_id == pid
    assert paths.markdown == out / "demo" / "leaderboard.md" and paths.markdown.is_file()
    assert paths.csv == out / "demo" / "leaderboard.csv" and paths.csv.is_file()
    assert paths.rounds_markdown == out / "demo" / "rounds.md" and paths.rounds_markdown.is_file()

    md = paths.markdown.read_text()
    assert md.startswith("# Leaderboard: demo\n")
    assert pid in md
    assert "ValueError: expert 'eva' has no tiny preset" in md
    assert "## Failed trials" in md and "Traceback (most recent call last)" in md
    assert to_markdown(paths.table, humanize=True) in md

    table = paths.table
    assert list(table["candidate"]) == ["clip+sam", "clip", "clip+eva"]
    assert list(table["status"]) == ["finished", "finished", "failed"]
    assert table["delta"].iloc[0] == pytest.approx(0.2)
    back = pd.read_csv(io.StringIO(paths.csv.read_text()))
    assert list(back.columns) == list(table.columns)
    assert back["rank"].tolist()[:2] == [1, 2] and math.isnan(back["rank"].iloc[2])
    assert back["key"].tolist() == [keys["clip+sam"], keys["clip"], keys["clip+eva"]]

    rounds = paths.rounds_markdown.read_text()
    assert "## Round 0" in rounds and "## Round 1" in rounds and "clip+sam" in rounds

    assert store.list_artifacts(pid, "report") == ["report/leaderboard.csv", "report/leaderboard.md",
                                                   "report/leaderboard.tex", "report/report.html", "report/rounds.md"]


def test_write_report_reads_settings_from_parent(tmp_path: Path) -> None:
    store = TrackingStore(f"sqlite:///{tmp_path}/mlflow.db")
    params = {"objective": "objective", "mode": "min", "baseline_key": _trial("clip", "sam").key}
    pid, keys = _record_search(store, params)
    paths = write_report(store, "demo", tmp_path / "r", parent_id=pid)
    assert list(paths.table["candidate"]) == ["clip", "clip+sam", "clip+eva"]  # min: 0.5 beats 0.7
    assert paths.table.attrs["baseline_key"] == keys["clip+sam"]
    assert paths.table["delta"].iloc[0] == pytest.approx(-0.2)
    explicit = write_report(store, "demo", tmp_path / "r", parent_id=pid, mode="max", baseline_key=keys["clip"])
    assert list(explicit.table["candidate"]) == ["clip+sam", "clip", "clip+eva"]
    assert explicit.table["delta"].iloc[0] == pytest.approx(0.2)


def test_write_report_names_missing_search(tmp_path: Path) -> None:
    store = TrackingStore(f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(LookupError, match="nope") as err:
        write_report(store, "nope", tmp_path / "r")
    assert str(tmp_path / "mlflow.db") in str(err.value)
