"""report.html, leaderboard.tex and the leaderboard published to the MLflow UI, from hand-made tables and from
realistic records rebuilt by ``eaglesearch report``."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from eaglesearch.app.ties import tie_labels
from eaglesearch.cli import app
from eaglesearch.report import ranked_table, write_report
from eaglesearch.report.html import leaderboard_table, report_html
from eaglesearch.report.latex import latex_escape, leaderboard_latex, tied_keys
from eaglesearch.report.mlflow_view import run_names
from eaglesearch.report.plots import StageCurve, grid_levels, main_effects, non_dominated
from eaglesearch.tracking import RunRecord, TrackingStore, leaderboard_url
from eaglesearch.tracking import mlflow_ui as UI
from tests.report_records import record_greedy, record_grid
from tests.test_report import runs_frame

PARENT = RunRecord(run_id="p0", name="demo@20260101-000000", experiment_id="1", status="FINISHED",
                   start_time=pd.Timestamp("2026-01-01", tz="UTC"), end_time=None)


def table_with_ties_and_baseline() -> pd.DataFrame:
    """The ranked table of test_report's runs (a tie at 0.70, a failed trial) with tie labels, an underscore in a
    label, and an answer-prior baseline row appended the way the lead's table adds it."""
    runs = runs_frame()
    runs.loc[runs["label"] == "clip+det", "label"] = "clip+det_v2&co"
    table = ranked_table(runs)
    tie = {"k3": "1", "k2": "2", "k1": "=2", "k5": "4", "k0": "5"}
    table.insert(1, "tie", table["key"].map(lambda k: tie.get(k, "")))
    baseline = {c: None for c in table.columns}
    baseline.update({"candidate": "answer prior", "status": "baseline", "objective": 0.3, "score/count": 0.3,
                     "score/color": 0.2, "tie": ""})
    attrs = dict(table.attrs)
    table = pd.concat([table, pd.DataFrame([baseline])], ignore_index=True)
    table.attrs.update(attrs)
    return table


# ------------------------------------------------------------------------------------------------ pure pieces

def test_non_dominated_by_mode() -> None:
    cost = [1.0, 2.0, 2.0, 3.0, 1.0]
    value = [0.5, 0.7, 0.6, 0.7, 0.5]
    assert non_dominated(cost, value, "max") == [True, True, False, False, True]  # equal points both kept
    assert non_dominated(cost, value, "min") == [True, False, False, False, True]


def test_grid_levels_and_main_effects() -> None:
    labels = ["clip+convnext fusion=concat lr=0.001", "clip+convnext fusion=xattn lr=0.001",
              "clip+sam fusion=concat lr=0.001", "clip+sam fusion=xattn lr=0.001"]
    levels = grid_levels(labels)
    assert list(levels.columns) == ["experts", "fusion"]  # lr never varied
    assert list(levels["fusion"]) == ["concat", "xattn", "concat", "xattn"]
    table = pd.DataFrame({"candidate": labels, "key": ["a", "b", "c", "d"], "status": "finished",
                          "objective": [0.4, 0.6, 0.5, 0.9]})
    effects = main_effects(table, {"a", "b", "c", "d"})
    fusion = effects["fusion"].set_index("level")
    assert fusion.loc["concat", "objective"] == pytest.approx(0.45) and fusion.loc["xattn", "trials"] == 2
    assert effects["experts"].set_index("level").loc["clip+sam", "objective"] == pytest.approx(0.7)
    assert main_effects(table, {"a"}) == {}  # one grid trial: nothing to compare


def test_latex_fragment_is_booktabs_with_bold_best_ties_and_baseline() -> None:
    tex = leaderboard_latex(table_with_ties_and_baseline(), "demo_1")
    assert tex.count("{") == tex.count("}")
    body = [ln for ln in tex.splitlines() if not ln.startswith("%")]
    assert body[0].startswith(r"\begin{tabular}{rl") and body[-1] == r"\end{tabular}"
    assert [ln for ln in body if ln in (r"\toprule", r"\midrule", r"\bottomrule")] == \
        [r"\toprule", r"\midrule", r"\midrule", r"\bottomrule"]  # second midrule sets the baseline apart
    rows = {ln.split(" & ")[1]: ln for ln in body if ln.count(" & ") > 3 and not ln.startswith("Rank")}
    best = rows[r"clip+pix2struct"]
    assert best.startswith("1 & ") and r"\textbf{0.800}" in best  # best objective and count in bold
    assert rows[r"clip+det\_v2\&co"].count(r"\textbf") == 0  # escaped label, nothing best
    assert rows[r"clip+sam$^{\dagger}$"].startswith("=2 & ")  # tied pair: both daggered
    assert r"clip+convnext$^{\dagger}$" in rows
    assert r"\textit{answer prior}" in rows  # the baseline row, italic, never bold
    assert "\\textbf" not in rows[r"\textit{answer prior}"]
    assert "clip+eva" not in tex  # failed trials stay in the markdown
    assert r"\multicolumn{" in tex and "statistically tied" in tex
    assert latex_escape("a_b%c$d#e{f}g~h^i\\") == (r"a\_b\%c\$d\#e\{f\}g\textasciitilde{}h\textasciicircum{}i"
                                                    r"\textbackslash{}")


def test_tied_keys_are_chains_with_their_leaders() -> None:
    table = pd.DataFrame({"key": list("abcde"), "tie": ["1", "=1", "3", "4", "=4"]})
    assert tied_keys(table) == {"a", "b", "d", "e"}


def test_html_leaderboard_rows_and_omitted_sections() -> None:
    table = table_with_ties_and_baseline()
    rows = leaderboard_table(table)
    assert rows.count("<tr") == len(table) + 1
    assert re.search(r'<tr class="baseline">.*?answer prior', rows)
    assert re.search(r'<tr class="failed">.*?clip\+eva', rows)
    assert re.search(r'<tr class="best">.*?clip\+pix2struct', rows)
    assert "[0.7000, 0.9000]" not in rows and "clip+det_v2&amp;co" in rows  # escaped; no invented interval
    page = report_html("demo", table, runs_frame(), PARENT, "sqlite:////x/mlflow.db", rounds=None, curves=[])
    assert page.startswith("<!DOCTYPE html>") and page.count("<section") == 6
    assert "Not a greedy search" in page and "No grid factors varied" in page and "No stage runs" in page
    assert 'id="fig-heatmap"' in page and 'id="fig-pareto"' in page
    assert not re.search(r"<script[^>]+src=", page) and not re.search(r"<link[^>]+href=", page)  # self-contained
    assert "Plotly" in page and len(page) > 1_000_000  # plotly.js inline
    curve = StageCurve(candidate="clip", stage="1. sft", steps=(0, 1, 2), losses=(2.0, 1.5, 1.2))
    with_losses = report_html("demo", table, runs_frame(), PARENT, "sqlite:////x/mlflow.db", None, [curve])
    assert 'id="fig-losses"' in with_losses and "No stage runs" not in with_losses


def test_run_names_sort_by_rank_and_show_ties() -> None:
    table = table_with_ties_and_baseline()
    names, ranks = run_names(table, runs_frame())
    assert names["r3"] == "1 clip+pix2struct" and names["r1"] == "2 clip+sam (tied =2)"
    assert names["r4"] == "– clip+eva (failed)" and ranks["r4"] == "" and ranks["r1"] == "=2"
    assert len(names) == len(runs_frame())  # the baseline row has no run to rename


# ------------------------------------------------------------------------------------------------ from the record

@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrackingStore, Path]:
    root = tmp_path_factory.mktemp("records")
    store = TrackingStore(f"sqlite:///{root}/mlflow.db")
    record_greedy(store, "demo-greedy")
    record_grid(store, "demo-grid")
    return store, root


def test_report_rebuilds_identically_from_mlflow_alone(recorded: tuple[TrackingStore, Path]) -> None:
    store, root = recorded
    reports = root / "reports"
    first = write_report(store, "demo-greedy", reports, ties=lambda table, runs: tie_labels(store, table, runs))
    html, tex = first.html.read_text(), first.latex.read_text()
    assert store.list_artifacts(first.parent_id, "report") == [
        "report/leaderboard.csv", "report/leaderboard.md", "report/leaderboard.tex", "report/report.html",
        "report/rounds.md", "report/stages.md"]

    shutil.rmtree(reports)
    result = CliRunner().invoke(app, ["report", "demo-greedy", "--tracking-uri", store.uri, "--reports",
                                      str(reports)])
    assert result.exit_code == 0, result.output
    assert first.html.read_text() == html and first.latex.read_text() == tex

    assert 'id="fig-greedy-path"' in html and 'id="fig-losses"' in html and 'id="fig-pareto"' in html
    assert "No grid factors varied" in html  # a greedy search has no grid factors
    for section in ("prealign", "sft"):
        assert f"1. {section}" in html or f"2. {section}" in html
    best = str(first.table["candidate"].iloc[0])
    assert best == "clip+pix2struct+sam" and f"{best}$^{{\\dagger}}$" in tex  # tied with the runner-up (40 items)


def test_grid_report_has_main_effects_and_no_greedy_path(recorded: tuple[TrackingStore, Path]) -> None:
    store, root = recorded
    paths = write_report(store, "demo-grid", root / "grid-reports")
    html = paths.html.read_text()
    assert 'id="fig-main-effects"' in html and "Not a greedy search" in html
    assert '"fusion"' in html and '"experts"' in html  # both factors varied, one panel each


def test_leaderboard_published_to_the_mlflow_ui(recorded: tuple[TrackingStore, Path]) -> None:
    store, root = recorded
    paths = write_report(store, "demo-greedy", root / "ui-reports",
                         ties=lambda table, runs: tie_labels(store, table, runs))
    parent = store.get_run(paths.parent_id)
    best = paths.table.iloc[0]
    assert parent.tags[UI.TAG_BEST_CANDIDATE] == best["candidate"] and parent.tags[UI.TAG_BEST_KEY] == best["key"]
    assert parent.metrics[UI.METRIC_BEST] == pytest.approx(best["objective"])
    assert parent.metrics[UI.METRIC_BEST_LOW] == pytest.approx(best["objective_low"])

    exp_id = parent.experiment_id
    experiments = dict(store.leaderboard_experiments())
    assert experiments["demo-greedy"] == exp_id
    tags = store.experiment_tags(exp_id)
    assert tags[UI.EXPERIMENT_KIND_TAG] == UI.EXPERIMENT_KIND_TRAINING
    assert tags[UI.NOTE_TAG].startswith(f"## demo-greedy: best {best['candidate']} (objective ")
    assert "| clip+eva" in tags[UI.NOTE_TAG]  # the ranked table, failed trial included
    envelope = json.loads(tags[UI.VIEW_TAG])
    state = json.loads(envelope["state"])
    assert envelope["name"] == UI.VIEW_NAME
    assert state["searchFilter"] == f"tags.mlflow.parentRunId = '{paths.parent_id}'"
    assert state["orderByKey"] == "metrics.`objective`" and state["orderByAsc"] is False
    assert state["selectedColumns"][:4] == ["metrics.`objective`", "metrics.`objective_low`",
                                            "metrics.`objective_high`", "metrics.`score/color`"]

    runs = store.trial_runs(paths.parent_id)
    names = {store.get_run(r).name for r in runs["run_id"]}
    assert f"1 {best['candidate']}" in names and "– clip+eva (failed)" in names
    assert leaderboard_url("http://127.0.0.1:5000/", exp_id) == (
        f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs?workflowType=machine_learning"
        f"&viewStateShareKey={UI.VIEW_ID}")
