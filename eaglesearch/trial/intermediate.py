"""Intermediate evaluations for Ray Tune's ASHA scheduler (``scheduler: {kind: asha, ...}`` in a search space).

Every ``eval_every`` steps of the trial's final stage the model answers the first ``eval_limit`` items of each
benchmark and the objective on that subset is reported (``report``: ``tune.report`` in a Ray trial), so the
scheduler can stop trials that fall behind. An evaluation leaves the trial exactly as it found it: gradients off,
the model's train/eval mode and every RNG state restored, so a trial's final weights and result are the same with
or without a scheduler (its key does not mention one, and a finished trial is reused by any search).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from eaglesearch.evaluate.run import Benchmark, evaluate_benchmarks
from eaglesearch.evaluate.summary import summarize
from eaglesearch.model import EagleModel
from eaglesearch.spec import TrialSpec
from eaglesearch.train.checkpoint import rng_state, set_rng_state
from eaglesearch.trial.aspect import image_policy

Report = Callable[[dict[str, float]], None]
STEP = "step"
"""The scheduler's time attribute: optimizer steps of the final stage done when the evaluation ran."""
OBJECTIVE = "objective"


def subset(benchmarks: Sequence[Benchmark], limit: int) -> list[Benchmark]:
    """The first ``limit`` items of each benchmark (the same items at every evaluation, so values compare)."""
    out = []
    for b in benchmarks:
        items = list(b.items)[:limit]
        ids = {item.id for item in items}
        out.append(replace(b, items=items, candidates={k: v for k, v in b.candidates.items() if k in ids}))
    return out


@dataclass(frozen=True)
class IntermediateSettings:
    """What the execution layer asks of a trial under a scheduler: evaluate every ``every`` steps of the final
    stage on ``limit`` items per benchmark and hand the numbers to ``report``."""

    every: int
    limit: int
    report: Report


@dataclass
class IntermediateEval:
    """Called after every step of the final stage (``StagePipeline(on_final_step=...)``); evaluates and reports
    every ``every`` steps, never at the last step (the trial's own evaluation reports that one)."""

    trial: TrialSpec
    tokenizer: Any
    benchmarks: list[Benchmark]
    every: int
    report: Report

    def __call__(self, model: EagleModel, done: int, total: int) -> None:
        if done % self.every or done >= total:
            return
        inner: EagleModel = getattr(model, "module", model)
        was_training, saved = inner.training, rng_state()
        try:
            with torch.no_grad():
                records, eval_s = evaluate_benchmarks(
                    inner, self.tokenizer, self.benchmarks, image_size=self.trial.data.image_size,
                    batch_size=self.trial.eval.batch_size, max_new_tokens=self.trial.eval.max_new_tokens,
                    template=self.trial.data.template, policy=image_policy(self.trial))
        finally:
            inner.train(was_training)
            set_rng_state(saved)
        cheap = self.trial.eval.model_copy(update={"bootstrap_resamples": 100})
        summary = summarize(records, cheap, seed=self.trial.seed)
        self.report({STEP: float(done), OBJECTIVE: summary.objective, "intermediate/eval_s": eval_s,
                     **{f"intermediate/{name}": value for name, value in summary.primary.items()}})
