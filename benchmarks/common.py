"""Helpers the benchmark scripts share: a finished trial's scores and persisted predictions, paired comparisons
between trials (the project's paired bootstrap over eval items), and running one search space with the inline
executor into a private store.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from eaglesearch.app.run import run_and_report
from eaglesearch.evaluate.items import ScoredItem
from eaglesearch.evaluate.metrics import Metric, get_metric
from eaglesearch.evaluate.predictions import PREDICTIONS, by_benchmark, read_predictions
from eaglesearch.evaluate.summary import objective_group
from eaglesearch.evaluate.uncertainty import PairedComparison, paired_aggregate, paired_bootstrap
from eaglesearch.model.validate import load_checked_search
from eaglesearch.spec import EvalSpec
from eaglesearch.tracking import TrackingStore


@dataclass(frozen=True)
class Trial:
    label: str
    objective: float
    scores: dict[str, float]  # benchmark -> primary score
    items: dict[str, list[ScoredItem]]  # benchmark -> scored items (persisted predictions)
    metrics: dict[str, Metric]
    eval: EvalSpec


def fmt(c: PairedComparison) -> str:
    return (f"{c.delta:+.3f} [95% CI {c.low:+.3f}, {c.high:+.3f}] (paired bootstrap over {c.n_units} items, "
            f"p={c.p_value:.3f})")


def load_trial(store: TrackingStore, row: dict[str, object], objective: str, eval_spec: EvalSpec,
               tmp: Path) -> Trial:
    """A finished trial's scores and persisted predictions (a cached trial's live with the run it copies)."""
    source = row.get("cached_from")
    run_id = source if isinstance(source, str) and source else str(row["run_id"])
    records = read_predictions(Path(store.download_artifact(run_id, PREDICTIONS, tmp / run_id)))
    grouped = by_benchmark(records)
    return Trial(label=str(row["label"]), objective=float(row[objective]),  # type: ignore[arg-type]
                 scores={b: float(row[f"score/{b}"]) for b in grouped},  # type: ignore[arg-type]
                 items={b: [r.scored for r in recs] for b, recs in grouped.items()},
                 metrics={b: get_metric(recs[0].metric) for b, recs in grouped.items()}, eval=eval_spec)


def compare_objective(a: Trial, b: Trial) -> PairedComparison:
    group = objective_group(a.eval, list(a.items))
    return paired_aggregate(a.items, b.items, a.metrics, group, n_resamples=a.eval.bootstrap_resamples,
                            confidence=a.eval.confidence, seed=0)


def compare_task(a: Trial, b: Trial, benchmark: str) -> PairedComparison:
    return paired_bootstrap(a.items[benchmark], b.items[benchmark], a.metrics[benchmark],
                            n_resamples=a.eval.bootstrap_resamples, confidence=a.eval.confidence, seed=0)


def pooled(trials: list[Trial], tag: str = "seed") -> Trial:
    """Several trials of one design (e.g. one per training seed) as one: items of trial i get ids suffixed with
    ``@<tag>i``, so pairing two pooled designs pairs seed i with seed i on the same item, and a bootstrap over the
    pooled items covers item and seed variation together. Scores and objective are the means over the trials."""
    first = trials[0]
    items = {b: [dataclasses.replace(s, item=dataclasses.replace(s.item, id=f"{s.item.id}@{tag}{i}"))
                 for i, t in enumerate(trials) for s in t.items[b]] for b in first.items}
    scores = {b: sum(t.scores[b] for t in trials) / len(trials) for b in first.scores}
    return Trial(label=first.label, objective=sum(t.objective for t in trials) / len(trials), scores=scores,
                 items=items, metrics=first.metrics, eval=first.eval)


@dataclass(frozen=True)
class SearchRun:
    parent_id: str
    runs: pd.DataFrame
    store: TrackingStore
    wall_s: float


def run_space(space: Path, root: Path, threads: int | None = None) -> SearchRun:
    """Run ``space`` with the inline executor into ``root`` (MLflow store, workdir, reports); fail on a failed trial."""
    loaded = load_checked_search(space)
    uri = f"sqlite:///{root}/mlflow.db"
    t0 = time.perf_counter()
    outcome, _ = run_and_report(loaded, tracking_uri=uri, workdir=root / "ws", reports_dir=root / "reports",
                                executor="inline", show_progress=False)
    store = TrackingStore(uri)
    runs = store.trial_runs(outcome.parent_id)
    failed = runs[runs["status_tag"] == "failed"]
    if len(failed):
        raise RuntimeError(f"{loaded.name}: trial(s) failed: "
                           + "; ".join(f"{r.label}: {r.error}" for r in failed.itertuples()))
    return SearchRun(outcome.parent_id, runs, store, time.perf_counter() - t0)
