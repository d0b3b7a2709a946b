"""Statistically tied ranks: a paired bootstrap between each ranked trial and the one ranked just above it.

Both trials' persisted predictions are paired item by item (same benchmark items, same resampled units) and the
difference of their objectives gets a 95% interval; when it contains 0 the two ranks are marked tied ("=1").
Trials without predictions (e.g. failed ones) are left unmarked.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from eaglesearch.spec import TrialSpec
from eaglesearch.tracking import TrackingStore, source_run_id
from eaglesearch.tracking.records import ARTIFACT_TRIAL_SPEC
from eaglesearch.trial.scoring import PREDICTIONS, ScoredTrial, load_scored, tie_labels_of


def _load(store: TrackingStore, run_id: str) -> ScoredTrial:
    with tempfile.TemporaryDirectory() as tmp:
        trial = TrialSpec.model_validate_json(Path(store.download_artifact(run_id, ARTIFACT_TRIAL_SPEC, tmp)).read_text())
        return load_scored(Path(store.download_artifact(run_id, PREDICTIONS, tmp)), trial)


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
    labels = tie_labels_of(list(ranked["objective"]), loaded, mode)
    return dict(zip(ranked["key"].astype(str), labels, strict=True))
