"""Realistic MLflow records of finished searches, written through eaglesearch.tracking without training anything.

Every trial gets persisted predictions (so tie labels and rescoring work), metrics computed from them by the real
summary code, cost figures, and stage runs with ``train/loss`` curves; one greedy trial fails. Used by the HTML/LaTeX
report tests and the browser test of the MLflow UI.
"""

from __future__ import annotations

import math
import random
import tempfile
from pathlib import Path

from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.metrics import get_metric
from eaglesearch.evaluate.predictions import PREDICTIONS, PredictionRecord, write_predictions
from eaglesearch.evaluate.summary import summarize, summary_metrics
from eaglesearch.spec import EvalSpec, ExpertSpec, ModelSpec, TrialResult, TrialSpec
from eaglesearch.tracking import TrackingStore

BENCHMARKS = ("count", "color", "ocr")
ITEMS = 40
GFLOPS = {"clip": 0.42, "sam": 1.10, "convnext": 0.65, "pix2struct": 0.88}
# Greedy search: (label, round, role, added, accuracy per benchmark or None for a failed trial)
GREEDY = [
    ("clip", 0, "base", None, (0.45, 0.55, 0.30)),
    ("clip+sam", 1, "candidate", "sam", (0.70, 0.60, 0.45)),
    ("clip+convnext", 1, "candidate", "convnext", (0.68, 0.60, 0.45)),
    ("clip+pix2struct", 1, "candidate", "pix2struct", (0.50, 0.58, 0.80)),
    ("clip+eva", 1, "candidate", "eva", None),
    ("clip+pix2struct+sam", 2, "candidate", "sam", (0.72, 0.62, 0.82)),
    ("clip+pix2struct+convnext", 2, "candidate", "convnext", (0.66, 0.64, 0.78)),
]
GRID_FUSIONS = ("channel_concat", "sequence_append", "llava_hr")
GRID_EXPERTS = (("clip", "convnext"), ("clip", "convnext", "sam"))


def _trial(experts: list[str], fusion: str | None = None) -> TrialSpec:
    model = {"experts": tuple(ExpertSpec(name=n) for n in experts)}
    if fusion is not None:
        model["fusion"] = fusion
    return TrialSpec(model=ModelSpec(**model))


def _predictions(accuracies: tuple[float, ...], seed: int) -> list[PredictionRecord]:
    rng = random.Random(seed)
    metric = get_metric("exact_match")
    out = []
    for bench, acc in zip(BENCHMARKS, accuracies, strict=True):
        hits = round(acc * ITEMS)
        flags = [True] * hits + [False] * (ITEMS - hits)
        rng.shuffle(flags)
        for i, hit in enumerate(flags):
            item = BenchmarkItem(benchmark=bench, id=f"{bench}-{i}", question="q?", prompt="q? Answer briefly.",
                                 references=("yes",), meta={"category": "c"})
            out.append(PredictionRecord(metric="exact_match", scoring="generate",
                                        scored=metric.score_item("yes" if hit else "no", item)))
    return out


def _losses(start: float, end: float, steps: int, seed: int) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    return [(s, end + (start - end) * math.exp(-4 * s / steps) + rng.uniform(-0.02, 0.02)) for s in range(steps)]


def _record_trial(store: TrackingStore, pid: str, exp: str, search: str, trial: TrialSpec, *, label: str,
                  rnd: int, role: str, added: str | None, strategy: str, accuracies: tuple[float, ...] | None,
                  seed: int, prealigned: dict[str, str]) -> str:
    rid = store.start_trial(pid, exp, trial, search=search, round=rnd, role=role, added=added, strategy=strategy,
                            label=label)
    if accuracies is None:
        store.fail_trial(rid, "ValueError: expert 'eva' has no tiny preset\nTraceback (most recent call last): ...")
        return rid
    records = _predictions(accuracies, seed)
    metrics = summary_metrics(summarize(records, EvalSpec(), seed=0))
    experts = [e.name for e in trial.model.experts]
    metrics.update({"cost/vision_gflops": sum(GFLOPS.get(e, 0.5) for e in experts),
                    "cost/params_total": 1_000_000.0 + 250_000.0 * len(experts), "cost/visual_tokens": 64.0,
                    "train/wall_s": 30.0 + 5 * len(experts), "cost/wall_s": 45.0 + 5 * len(experts),
                    "train/loss_final": 1.0 - sum(accuracies) / 6})
    for e in experts:  # stage 1 per expert: built by the first trial that needs it, reused after
        status = "reused" if e in prealigned else "trained"
        prealigned.setdefault(e, rid)
        store.record_stage(rid, exp, stage="prealign", index=1, status=status, trial_key=trial.key, expert=e,
                           artifact_key=f"prealign-{e}", metrics={"stage/steps": 20.0, "stage/wall_s": 4.0},
                           losses=_losses(3.0, 1.5, 20, seed=sum(map(ord, e))))
    store.record_stage(rid, exp, stage="sft", index=2, status="trained", trial_key=trial.key,
                       metrics={"stage/steps": 30.0, "stage/wall_s": 20.0},
                       losses=_losses(2.5, metrics["train/loss_final"], 30, seed=seed))
    with tempfile.TemporaryDirectory() as tmp:
        store.log_artifact(rid, write_predictions(Path(tmp) / PREDICTIONS, records))
    store.finish_trial(rid, TrialResult(key=trial.key, status="finished", objective=metrics["objective"],
                                        metrics=metrics))
    return rid


def record_greedy(store: TrackingStore, search: str = "demo-greedy") -> str:
    """A finished greedy search of 7 trials (one failed) over 3 rounds; returns the parent run id."""
    exp = store.ensure_experiment(search)
    pid, _ = store.open_parent(search, "fp-greedy", f"{search}-fp", f"name: {search}\n",
                               {"objective": "objective", "mode": "max", "strategy": "greedy"})
    prealigned: dict[str, str] = {}
    for i, (label, rnd, role, added, accs) in enumerate(GREEDY):
        _record_trial(store, pid, exp, search, _trial(label.split("+")), label=label, rnd=rnd, role=role,
                      added=added, strategy="greedy", accuracies=accs, seed=i, prealigned=prealigned)
    store.close_parent(pid)
    return pid


def record_grid(store: TrackingStore, search: str = "demo-grid") -> str:
    """A finished grid search: 3 fusions x 2 expert sets, labelled as the grid strategy labels them."""
    exp = store.ensure_experiment(search)
    pid, _ = store.open_parent(search, "fp-grid", f"{search}-fp", f"name: {search}\n",
                               {"objective": "objective", "mode": "max", "strategy": "grid"})
    prealigned: dict[str, str] = {}
    for i, (fusion, experts) in enumerate((f, e) for e in GRID_EXPERTS for f in GRID_FUSIONS):
        trial = _trial(list(experts), fusion)
        base = 0.45 + 0.08 * GRID_FUSIONS.index(fusion) + 0.06 * (len(experts) - 2)
        _record_trial(store, pid, exp, search, trial, label=f"{trial.label} fusion={fusion}", rnd=0, role="grid",
                      added=None, strategy="grid", accuracies=(base, base - 0.05, base + 0.05), seed=100 + i,
                      prealigned=prealigned)
    store.close_parent(pid)
    return pid
