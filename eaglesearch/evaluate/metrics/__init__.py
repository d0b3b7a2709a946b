"""Benchmark metrics: one pinned implementation per metric, tested on reference/metrics.md's vectors.

Each metric is a :class:`Metric` (per-item :meth:`~Metric.score`, benchmark-level :meth:`~Metric.aggregate`,
bootstrap :meth:`~Metric.unit`) registered by name in :data:`METRICS`; the pure functions underneath are exported
for direct use and testing. Where public harnesses disagree, each module's docstring states the choice and why.
"""

from __future__ import annotations

from eaglesearch.evaluate.metrics.anls import ANLS, anls, levenshtein
from eaglesearch.evaluate.metrics.base import MeanMetric, Metric
from eaglesearch.evaluate.metrics.choice import ChoiceAccuracy, choice_accuracy, extract_choice
from eaglesearch.evaluate.metrics.exact import (
    GQA_EXACT_MATCH,
    SYNTHETIC_EXACT_MATCH,
    ExactMatch,
    exact_match,
    gqa_exact_match,
    normalize_answer,
    normalize_gqa,
)
from eaglesearch.evaluate.metrics.mmbench import MMBenchCircular
from eaglesearch.evaluate.metrics.mme import COGNITION_SUBTASKS, MME, PERCEPTION_SUBTASKS, parse_mme_answer
from eaglesearch.evaluate.metrics.normalize import vqa_normalize
from eaglesearch.evaluate.metrics.ocrbench import OCRBench, fold_fullwidth, ocrbench_match
from eaglesearch.evaluate.metrics.pope import POPE, parse_yes_no, pope_rates
from eaglesearch.evaluate.metrics.relaxed import RelaxedAccuracy, relaxed_correct
from eaglesearch.evaluate.metrics.vqa import VQAAccuracy, vqa_accuracy

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        SYNTHETIC_EXACT_MATCH,
        GQA_EXACT_MATCH,
        VQAAccuracy(),
        ANLS(),
        RelaxedAccuracy(),
        POPE(),
        MME(),
        OCRBench(),
        ChoiceAccuracy(),
        MMBenchCircular(),
    )
}


def get_metric(name: str) -> Metric:
    """The registered metric called ``name``; a ``KeyError`` lists the registered names otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered metrics: {', '.join(sorted(METRICS))}") from None


__all__ = [
    "ANLS",
    "COGNITION_SUBTASKS",
    "METRICS",
    "MME",
    "PERCEPTION_SUBTASKS",
    "POPE",
    "ChoiceAccuracy",
    "ExactMatch",
    "MMBenchCircular",
    "MeanMetric",
    "Metric",
    "OCRBench",
    "RelaxedAccuracy",
    "VQAAccuracy",
    "anls",
    "choice_accuracy",
    "exact_match",
    "extract_choice",
    "fold_fullwidth",
    "get_metric",
    "gqa_exact_match",
    "levenshtein",
    "normalize_answer",
    "normalize_gqa",
    "ocrbench_match",
    "parse_mme_answer",
    "parse_yes_no",
    "pope_rates",
    "relaxed_correct",
    "vqa_accuracy",
    "vqa_normalize",
]
