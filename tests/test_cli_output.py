"""What a user reads: humanized table cells, round lines that say what happened, exit codes, and progress lines
and JSON events where there is no terminal."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pandas as pd
import pytest

from eaglesearch.app.outcome import EXIT_INCOMPLETE, EXIT_NO_RESULT, EXIT_OK, round_lines, search_exit_code
from eaglesearch.execution.progress import LineProgress, first_line, make_progress
from eaglesearch.execution.stage_progress import Throttle, progress_from_report, progress_report
from eaglesearch.report import humanize
from eaglesearch.report.render import to_markdown
from eaglesearch.search.base import RoundDecision
from eaglesearch.spec import TrialResult
from eaglesearch.spec.progress import StageProgress


@pytest.mark.parametrize(("column", "value", "text"), [
    ("params", 2094272, "2.09M"), ("params", 134_515_008, "135M"), ("params", 7_240_000_000, "7.24B"),
    ("params", 812, "812"), ("visual_tokens", 2880, "2.88k"), ("train_s", 46.6036, "47 s"),
    ("train_s", 64.2, "1m04s"), ("trial_s", 7505, "2h05m"), ("train_s", 0.42, "0.4 s"),
    ("vision_gflops", 0.0084, "0.00840"), ("vision_gflops", 123.4, "123"), ("vision_gflops", 1.5e7, "1.50e+07"),
    ("objective", 0.7722, "0.7722"), ("round", 2.0, "2"), ("rank", pd.NA, "–"), ("round", float("nan"), "–"),
    ("candidate", "clip+sam", "clip+sam"),
])
def test_cells_read_as_people_read_them(column: str, value: object, text: str) -> None:
    assert humanize.cell(column, value) == text


def test_markdown_humanizes_costs_and_csv_keeps_raw_values() -> None:
    table = pd.DataFrame({"candidate": ["clip"], "objective": [0.75], "params": [2094272], "train_s": [64.2]})
    md = to_markdown(table, humanize=True)
    assert "2.09M" in md and "1m04s" in md and "0.7500" in md and "2094272" not in md
    assert "2094272" in table.to_csv(index=False)


def _decision(rnd: int, chosen: str | None, objective: float | None, previous: float | None, gain: float | None,
              candidates=(), stopped: str | None = None) -> RoundDecision:
    return RoundDecision(round=rnd, candidates=tuple(candidates), chosen_label=chosen, chosen_key=None,
                         added=None, objective=objective, previous_objective=previous, gain=gain, stopped=stopped)


def test_round_lines_say_what_was_adopted_and_why_the_search_stopped() -> None:
    decisions = [
        _decision(0, "clip", 0.45, None, None),
        _decision(1, "clip+pix2struct", 0.756, 0.45, 0.306),
        _decision(2, None, 0.773, 0.756, 0.017, candidates=[("clip+pix2struct+convnext", "k1", 0.773, "finished"),
                                                             ("clip+pix2struct+sam", "k2", 0.683, "finished")],
                  stopped="no gain"),
    ]
    assert round_lines(decisions, 0.05) == [
        "round 0: base clip 0.450",
        "round 1: adopted clip+pix2struct 0.756 (gain +0.306 over clip 0.450)",
        ("round 2: no candidate gained more than 0.05 (best clip+pix2struct+convnext +0.017); stopped with "
         "clip+pix2struct 0.756"),
    ]
    assert round_lines([_decision(0, None, None, None, None, stopped="base failed")], 0.05) == [
        "round 0: the base trial failed; the search stopped"]


def test_exit_code_is_zero_only_for_a_complete_search_with_a_finished_trial() -> None:
    ok = pd.DataFrame({"status": ["finished", "baseline"], "objective": [0.5, 0.2]})
    failed = pd.DataFrame({"status": ["failed", "baseline"], "objective": [float("nan"), 0.2]})
    served = pd.DataFrame({"status": ["cached"], "objective": [0.5]})
    base = [_decision(0, "clip", 0.5, None, None)]
    assert search_exit_code(SimpleNamespace(complete=True, decisions=base), ok) == EXIT_OK
    assert search_exit_code(SimpleNamespace(complete=True, decisions=[]), served) == EXIT_OK
    assert search_exit_code(SimpleNamespace(complete=False, decisions=base), ok) == EXIT_INCOMPLETE
    assert search_exit_code(SimpleNamespace(complete=True, decisions=[]), failed) == EXIT_NO_RESULT
    base_failed = [_decision(0, None, None, None, None, stopped="base failed")]
    assert search_exit_code(SimpleNamespace(complete=True, decisions=base_failed), ok) == EXIT_NO_RESULT


class _Strategy:
    def expected_trials(self) -> list[int]:
        return [1, 2]


def _proposal(key: str, label: str, rnd: int) -> SimpleNamespace:
    return SimpleNamespace(trial=SimpleNamespace(key=key), label=label, round=rnd)


def test_progress_lines_name_each_event_with_its_interval_error_and_eta() -> None:
    stream = io.StringIO()
    with LineProgress("demo", _Strategy(), "max", stream=stream) as progress:
        progress.trial_started(_proposal("a", "clip", 0))
        progress.trial_finished(_proposal("a", "clip", 0), TrialResult(
            key="a", status="finished", objective=0.45, metrics={"objective_low": 0.4, "objective_high": 0.5}))
        progress.trial_started(_proposal("b", "clip+sam", 1))
        error = "DataProblem: /data/train.json record 2: sample 'x' is 900 tokens, longer than max_length 256\n  at …"
        progress.trial_finished(_proposal("b", "clip+sam", 1), TrialResult(key="b", status="failed", error=error))
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("search demo: 3 trial(s) planned")
    assert "round 0 · clip started" in lines[1]
    assert "round 0 · clip finished 0.450 [0.400, 0.500] (1/3 planned, ETA " in lines[2]
    assert f"round 1 · clip+sam failed: {first_line(error)} (2/3 planned, ETA " in lines[4]
    assert "longer than max_length 256" in lines[4]  # the first error line, whole
    assert "search demo: 2 trial(s) done" in lines[-1]


def test_stage_progress_lines_and_events_say_where_a_trial_is() -> None:
    stream = io.StringIO()
    progress = LineProgress("demo", _Strategy(), "max", stream=stream)
    progress.stage_progress(_proposal("a", "clip", 0), StageProgress("sft", 3, 3, 40, 200, 1.25, 70.0))
    assert stream.getvalue().strip().endswith("round 0 · clip stage 3/3 sft step 40/200 loss 1.250, ETA 1m10s")
    stream = io.StringIO()
    progress = LineProgress("demo", _Strategy(), "max", stream=stream, as_json=True)
    progress.stage_progress(_proposal("a", "clip", 0), StageProgress("prealign/sam", 1, 3, 1, 8, 2.0, None))
    (event,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert event["event"] == "stage_progress" and event["key"] == "a" and event["stage"] == "prealign/sam"
    assert (event["step"], event["steps"], event["stage_index"], event["stage_eta_s"]) == (1, 8, 1, None)


def test_stage_progress_throttle_passes_each_stage_first_and_last_step() -> None:
    sent: list[tuple[str, int]] = []
    throttle = Throttle(lambda p: sent.append((p.label, p.step)), every_s=3600)
    for label, steps in (("align", 4), ("sft", 5)):
        for step in range(1, steps + 1):
            throttle(StageProgress(label, 1, 2, step, steps, 1.0, None))
    assert sent == [("align", 1), ("align", 4), ("sft", 1), ("sft", 5)]
    report = progress_report(StageProgress("sft", 2, 2, 5, 5, 0.5, 3.0))
    assert progress_from_report(report) == StageProgress("sft", 2, 2, 5, 5, 0.5, 3.0)
    assert progress_from_report({"status": "finished", "objective": 0.5}) is None


def test_json_events_are_one_object_per_line() -> None:
    stream = io.StringIO()
    progress = LineProgress("demo", _Strategy(), "max", stream=stream, as_json=True)
    progress.trial_started(_proposal("a", "clip", 0))
    progress.trial_finished(_proposal("a", "clip", 0), TrialResult(key="a", status="finished", objective=0.45))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["trial_started", "trial_finished"]
    assert events[1]["objective"] == 0.45 and events[1]["done"] == 1 and events[1]["planned"] == 3
    assert make_progress("none", "demo", _Strategy(), "max") is None
    with pytest.raises(ValueError, match="progress must be one of"):
        make_progress("fancy", "demo", _Strategy(), "max")
