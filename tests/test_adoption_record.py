"""``adopt: {rule: paired_ci}`` on a real record, without training: trials recorded in MLflow with persisted
predictions are paired item by item by the execution layer's comparator, the round is decided, its verdicts are
recorded, and ``rounds.md`` / ``report.html`` / the terminal round line show every candidate's interval."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pickle
from pathlib import Path

import pytest

from eaglesearch.app.outcome import round_lines
from eaglesearch.evaluate.items import BenchmarkItem, ScoredItem
from eaglesearch.evaluate.predictions import PREDICTIONS, PredictionRecord, write_predictions
from eaglesearch.execution.gains import RecordComparator, record_rounds
from eaglesearch.report import write_report
from eaglesearch.search import GreedyStrategy
from eaglesearch.search.adoption import ADOPTED, NOT_SIGNIFICANT
from eaglesearch.spec import GreedyStrategySpec, Recipe, TrialFactory, TrialResult, TrialSpec
from eaglesearch.tracking import TrackingStore

N_ITEMS = 120
# Which items each trial answers correctly: sam fixes 36 of the base's 60 misses; convnext fixes 3 and breaks 2.
CORRECT = {
    "clip": set(range(60)),
    "clip+sam": set(range(96)),
    "clip+convnext": set(range(2, 63)),
}


def predictions(path: Path, correct: set[int]) -> Path:
    records = []
    for i in range(N_ITEMS):
        item = BenchmarkItem(benchmark="count", id=f"count-{i}", question="how many?", prompt="how many?",
                             references=("3",))
        answer = "3" if i in correct else "4"
        records.append(PredictionRecord(metric="exact_match", scoring="generate",
                                        scored=ScoredItem(item=item, prediction=answer,
                                                          values={"score": float(i in correct)})))
    return write_predictions(path, records)


def record(store: TrackingStore, exp: str, pid: str, trial: TrialSpec, tmp: Path, **meta) -> TrialResult:
    run_id = store.start_trial(pid, exp, trial, search="adopt", strategy="greedy", label=trial.label, **meta)
    correct = CORRECT[trial.label]
    folder = tmp / trial.key
    folder.mkdir()
    store.log_artifact(run_id, predictions(folder / PREDICTIONS, correct))
    result = TrialResult(key=trial.key, status="finished", objective=len(correct) / N_ITEMS,
                         metrics={"score/count": len(correct) / N_ITEMS}, run_id=run_id)
    store.finish_trial(run_id, result)
    return result


@pytest.mark.slow  # most of its time is MLflow creating a fresh sqlite store's schema (5-20 s on this box)
def test_paired_ci_round_decided_and_reported_from_the_record(tmp_path: Path) -> None:
    store = TrackingStore(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = store.ensure_experiment("adopt")
    # sam's trial was trained by an earlier search: this one serves it as a cached run (artifacts stay at the source).
    earlier, _ = store.open_parent("adopt", "fp0", "t0", "name: adopt\n", {})
    pid, _ = store.open_parent("adopt", "fp1", "t1", "name: adopt\n", {"objective": "objective", "strategy": "greedy"})
    spec = GreedyStrategySpec(kind="greedy", base=("clip",), candidates=("sam", "convnext"), adopt={}, max_rounds=1)
    comparator = RecordComparator(store.uri)
    strategy = GreedyStrategy(spec, TrialFactory(recipe=Recipe(name="r")), comparator)
    while not strategy.finished:
        batch = []
        while (p := strategy.ask()) is not None:
            batch.append(p)
        for p in batch:
            meta = {"round": p.round, "role": p.role, "added": p.added}
            if p.added == "sam":
                source = record(store, exp, earlier, p.trial, tmp_path, **meta)
                run_id = store.record_cached(pid, exp, p.trial, source, search="adopt", strategy="greedy",
                                             label=p.label, **meta)
                result = source.model_copy(update={"status": "cached", "run_id": run_id})
            else:
                result = record(store, exp, pid, p.trial, tmp_path, **meta)
            strategy.tell(p.key, result)

    decision = strategy.decisions()[1]
    verdicts = {v.added: v for v in decision.verdicts}
    assert decision.chosen_label == "clip+sam" and decision.gain == pytest.approx(0.30)
    sam, convnext = verdicts["sam"], verdicts["convnext"]
    assert sam.decision == ADOPTED and 0 < sam.low < 0.30 < sam.high  # type: ignore[operator]
    assert sam.p_value == 0 and sam.confidence == pytest.approx(0.975)  # Holm: first of 2 at 1 - 0.05/2
    assert convnext.decision == NOT_SIGNIFICANT and convnext.low < 0 < convnext.high  # type: ignore[operator]
    assert convnext.gain == pytest.approx(1 / N_ITEMS) and convnext.confidence == pytest.approx(0.95)
    assert pickle.loads(pickle.dumps(comparator)).compare(  # a fresh copy re-reads the record: same numbers
        strategy.result(decision.chosen_key), strategy.result(strategy.baseline_key()),  # type: ignore[arg-type]
        "objective", 0.975).low == pytest.approx(sam.low)

    record_rounds(store, pid, strategy.decisions())
    store.close_parent(pid)
    paths = write_report(store, "adopt", tmp_path / "reports", parent_id=pid)
    rounds = paths.rounds_markdown.read_text()  # type: ignore[union-attr]
    assert "adoption rule: paired_ci (Holm, alpha 0.05)" in rounds
    assert f"[{sam.low:+.3f}, {sam.high:+.3f}] 97.5%" in rounds and "| adopted" in rounds
    assert f"[{convnext.low:+.3f}, {convnext.high:+.3f}] 95%" in rounds and "not significant" in rounds
    html = paths.html.read_text()  # type: ignore[union-attr]
    assert "adoption rule: paired_ci" in html and f"[{sam.low:+.3f}, {sam.high:+.3f}] 97.5%" in html

    lines = round_lines(strategy.decisions(), spec.min_gain)
    assert lines[1].startswith("round 1: adopted clip+sam 0.800 (gain +0.300 [") and " at 97.5% over clip 0.500" \
        in lines[1]
