"""An evaluation's numbers from its prediction records alone: per-item values, each benchmark's score with its
interval, and the objective with its interval. No model and no torch: a trial's evaluation, ``eaglesearch rescore``,
ties and round decisions all compute them here, so the numbers are the same wherever they are computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eaglesearch.evaluate.groups import AggregateGroup, combine, mean_group
from eaglesearch.evaluate.items import ScoredItem
from eaglesearch.evaluate.metrics import Metric, get_metric
from eaglesearch.evaluate.predictions import PredictionRecord, by_benchmark
from eaglesearch.evaluate.uncertainty import Interval, aggregate_interval, bootstrap_interval
from eaglesearch.spec import EvalSpec


@dataclass(frozen=True)
class Summary:
    values: dict[str, dict[str, float]]  # benchmark → every aggregate number of its metric
    primary: dict[str, float]
    intervals: dict[str, Interval]
    objective: float
    objective_interval: Interval


def objective_group(spec: EvalSpec, names: Sequence[str]) -> AggregateGroup:
    if spec.objective == "mean":
        members = list(spec.benchmarks) if spec.benchmarks is not None else sorted(names)
        return mean_group(members, name="mean")
    agg = spec.aggregates[spec.objective]
    return AggregateGroup(name=spec.objective, members=agg.members, scale=dict(agg.scale), percent=agg.percent)


def summarize(records: Sequence[PredictionRecord], spec: EvalSpec, *, rescore: bool = False, seed: int = 0) -> Summary:
    """Every benchmark number, its interval, and the objective with its interval, from prediction records alone.

    With ``rescore``, per-item values are recomputed from the predictions (as ``eaglesearch rescore`` does)
    instead of taken from the records.
    """
    grouped = by_benchmark(records)
    metrics: dict[str, Metric] = {}
    scored: dict[str, list[ScoredItem]] = {}
    for name, recs in grouped.items():
        metric = get_metric(recs[0].metric)
        metrics[name] = metric
        scored[name] = [metric.score_item(r.scored.prediction, r.scored.item) if rescore else r.scored for r in recs]
    values = {name: metrics[name].aggregate(items) for name, items in scored.items()}
    primary = {name: v[metrics[name].primary] for name, v in values.items()}
    intervals = {
        name: bootstrap_interval(items, metrics[name], n_resamples=spec.bootstrap_resamples,
                                 confidence=spec.confidence, seed=seed)
        for name, items in scored.items()
    }
    group = objective_group(spec, list(grouped))
    missing = [m for m in group.members if m not in scored]
    if missing:
        raise KeyError(f"the objective '{group.name}' needs {', '.join(missing)}, which were not evaluated "
                       f"(evaluated: {', '.join(sorted(scored))})")
    members = {m: scored[m] for m in group.members}
    objective = combine(group, primary)
    interval = aggregate_interval(members, {m: metrics[m] for m in group.members}, group,
                                  n_resamples=spec.bootstrap_resamples, confidence=spec.confidence, seed=seed)
    return Summary(values=values, primary=primary, intervals=intervals, objective=objective,
                   objective_interval=interval)


def summary_metrics(summary: Summary) -> dict[str, float]:
    """The curated MLflow metrics of an evaluation: each benchmark's primary score and interval, the objective's."""
    out: dict[str, float] = {"objective": summary.objective, "objective_low": summary.objective_interval.low,
                             "objective_high": summary.objective_interval.high}
    for name, value in summary.primary.items():
        out[f"score/{name}"] = value
        out[f"score_low/{name}"] = summary.intervals[name].low
        out[f"score_high/{name}"] = summary.intervals[name].high
    return out
