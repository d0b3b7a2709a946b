"""A finished trial scored again from its persisted predictions alone (no model, no GPU).

What ``eaglesearch rescore`` and the report's tied ranks need from the evaluation layer, on local files: the
execution layer downloads a trial's ``predictions.jsonl`` and its spec from the record and hands them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eaglesearch.evaluate.items import ScoredItem
from eaglesearch.evaluate.metrics import Metric, get_metric
from eaglesearch.evaluate.predictions import PREDICTIONS, by_benchmark, read_predictions
from eaglesearch.evaluate.summary import objective_group, summarize, summary_metrics
from eaglesearch.evaluate.uncertainty import PairedComparison, paired_aggregate, paired_bootstrap, tied_ranks
from eaglesearch.spec import EvalSpec, TrialSpec

__all__ = ["PREDICTIONS", "ScoredTrial", "load_scored", "paired_metric", "rescore_predictions", "tie_labels_of"]


def rescore_predictions(predictions: Path, trial: TrialSpec) -> dict[str, float]:
    """Every summary metric of ``trial`` recomputed from its predictions file with today's pinned metrics."""
    return summary_metrics(summarize(read_predictions(predictions), trial.eval, rescore=True, seed=trial.seed))


@dataclass(frozen=True)
class ScoredTrial:
    """A trial's per-item scores by benchmark, the metric of each benchmark, and its evaluation settings."""

    items: dict[str, list[ScoredItem]]
    metrics: dict[str, Metric]
    eval: EvalSpec


def load_scored(predictions: Path, trial: TrialSpec) -> ScoredTrial:
    grouped = by_benchmark(read_predictions(predictions))
    return ScoredTrial(items={name: [r.scored for r in recs] for name, recs in grouped.items()},
                       metrics={name: get_metric(recs[0].metric) for name, recs in grouped.items()},
                       eval=trial.eval)


def paired_metric(a: ScoredTrial, b: ScoredTrial, metric: str, confidence: float) -> PairedComparison:
    """Paired bootstrap of ``metric`` (``objective``: the recipe's objective group; ``score/<benchmark>``: that
    benchmark's primary score), a minus b, with a's resample count and seed 0 (deterministic: the same two trials
    always give the same interval and p-value). ``ValueError`` when the trials do not score the same items."""
    if metric == "objective":
        group = objective_group(a.eval, list(a.items))
        return paired_aggregate(a.items, b.items, a.metrics, group, n_resamples=a.eval.bootstrap_resamples,
                                confidence=confidence, seed=0)
    bench = metric.removeprefix("score/")
    if metric == bench or bench not in a.items or bench not in b.items:
        raise ValueError(f"'{metric}' has no paired bootstrap: use 'objective' or 'score/<benchmark>' "
                         f"(benchmarks: {', '.join(sorted(a.items))})")
    return paired_bootstrap(a.items[bench], b.items[bench], a.metrics[bench], n_resamples=a.eval.bootstrap_resamples,
                            confidence=confidence, seed=0)


def tie_labels_of(objectives: Sequence[float], trials: Sequence[ScoredTrial], mode: str) -> list[str]:
    """Rank labels with ties (``"1"``, ``"=1"``, ``"3"``) for trials listed best first: a paired bootstrap of
    each trial's objective against the one ranked just above it; ``mode`` is the ranking's ``max`` or ``min``."""
    sign = 1.0 if mode == "max" else -1.0

    def compare(i: int, j: int) -> PairedComparison:
        return paired_metric(trials[i], trials[j], "objective", trials[i].eval.confidence)

    # Separation does not depend on the sign of the difference, so min-mode rankings only flip the means.
    return tied_ranks([sign * float(v) for v in objectives], compare)
