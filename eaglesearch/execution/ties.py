"""Statistically tied ranks: a paired bootstrap between each ranked trial and the one ranked just above it.

Both trials' persisted predictions are paired item by item (same benchmark items, same resampled units) and the
difference of their objectives gets a 95% interval; when it contains 0 the two ranks are marked tied ("=1").
Trials without predictions (e.g. failed ones) are left unmarked.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from eaglesearch.evaluate.items import ScoredItem
from eaglesearch.evaluate.metrics import Metric, get_metric
from eaglesearch.evaluate.predictions import PREDICTIONS, by_benchmark, read_predictions
from eaglesearch.evaluate.run import objective_group
from eaglesearch.evaluate.uncertainty import PairedComparison, paired_aggregate, tied_ranks
from eaglesearch.execution.rescore import TRIAL_SPEC
from eaglesearch.spec import EvalSpec, TrialSpec
from eaglesearch.tracking import TrackingStore, source_run_id

Loaded = tuple[dict[str, list[ScoredItem]], dict[str, Metric], EvalSpec]


def _load(store: TrackingStore, run_id: str) -> Loaded:
    with tempfile.TemporaryDirectory() as tmp:
        records = read_predictions(Path(store.download_artifact(run_id, PREDICTIONS, tmp)))
        trial = TrialSpec.model_validate_json(Path(store.download_artifact(run_id, TRIAL_SPEC, tmp)).read_text())
    grouped = by_benchmark(records)
    metrics = {name: get_metric(recs[0].metric) for name, recs in grouped.items()}
    return {name: [r.scored for r in recs] for name, recs in grouped.items()}, metrics, trial.eval


def tie_labels(store: TrackingStore, table: pd.DataFrame, runs: pd.DataFrame, mode: str | None = None) \
        -> dict[str, str]:
    """Trial key → rank label with ties (``"1"``, ``"=1"``, ``"3"``) for the ranked rows of a report table whose
    ranking is by the recipe's objective (``mode`` defaults to the table's)."""
    mode = mode or table.attrs.get("mode", "max")
    ranked = table[table["rank"].notna()]
    if len(ranked) < 2:
        return {str(k): str(int(r)) for k, r in zip(ranked["key"], ranked["rank"], strict=True)}
    source = {}
    for _, row in runs.iterrows():
        source[row["key"]] = source_run_id(row)
    loaded = [_load(store, source[key]) for key in ranked["key"]]
    sign = 1.0 if mode == "max" else -1.0

    def compare(i: int, j: int) -> PairedComparison:
        (a, metrics, spec), (b, _, _) = loaded[i], loaded[j]
        group = objective_group(spec, list(a))
        return paired_aggregate(a, b, metrics, group, n_resamples=spec.bootstrap_resamples,
                                confidence=spec.confidence, seed=0)

    # Separation does not depend on the sign of the difference, so min-mode rankings only flip the means.
    labels = tied_ranks([sign * float(v) for v in ranked["objective"]], compare)
    return dict(zip(ranked["key"].astype(str), labels, strict=True))

