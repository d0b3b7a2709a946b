"""summarize(): benchmark scores, intervals and the recipe's objective, from prediction records alone."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.metrics import get_metric
from eaglesearch.evaluate.predictions import PredictionRecord, read_predictions, write_predictions
from eaglesearch.evaluate.summary import summarize, summary_metrics
from eaglesearch.spec import EvalSpec


def records(name: str, metric: str, accuracy: float, n: int, seed: int) -> list[PredictionRecord]:
    rng = random.Random(seed)
    m = get_metric(metric)
    out = []
    for i in range(n):
        item = BenchmarkItem(benchmark=name, id=f"{name}-{i}", question="q?", prompt="q? Answer briefly.",
                             references=("yes",), meta={"category": "c"})
        prediction = "yes" if rng.random() < accuracy else "no"
        out.append(PredictionRecord(metric=metric, scoring="generate", scored=m.score_item(prediction, item)))
    return out


def test_mean_objective_interval_and_rescore_identity(tmp_path: Path) -> None:
    recs = records("a", "exact_match", 0.8, 200, 0) + records("b", "exact_match", 0.4, 200, 1)
    spec = EvalSpec()
    summary = summarize(recs, spec)
    assert summary.objective == pytest.approx((summary.primary["a"] + summary.primary["b"]) / 2)
    for name in ("a", "b"):
        iv = summary.intervals[name]
        assert iv.low < summary.primary[name] < iv.high and iv.high - iv.low < 0.2
    path = write_predictions(tmp_path / "p.jsonl", recs)
    again = summarize(read_predictions(path), spec, rescore=True)
    assert summary_metrics(again) == summary_metrics(summary)


def test_declared_aggregate_is_the_objective() -> None:
    recs = records("a", "exact_match", 0.9, 100, 0) + records("b", "exact_match", 0.5, 100, 1)
    spec = EvalSpec.model_validate({"objective": "paper_avg",
                                    "aggregates": {"paper_avg": {"members": ["a", "b"], "percent": True}}})
    summary = summarize(recs, spec)
    assert summary.objective == pytest.approx(50 * (summary.primary["a"] + summary.primary["b"]))
    assert summary.objective_interval.low < summary.objective < summary.objective_interval.high


def test_objective_needs_its_benchmarks() -> None:
    spec = EvalSpec(benchmarks=("a", "missing"))
    with pytest.raises(KeyError, match="missing"):
        summarize(records("a", "exact_match", 0.5, 20, 0), spec)


def test_unknown_objective_is_a_spec_error() -> None:
    with pytest.raises(ValueError, match="neither 'mean' nor a declared aggregate"):
        EvalSpec(objective="general")
