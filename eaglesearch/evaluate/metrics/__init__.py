"""Benchmark metrics: one pinned implementation per metric, tested on reference/metrics.md's vectors.

Each metric is a :class:`Metric` (per-item :meth:`~Metric.score`, benchmark-level :meth:`~Metric.aggregate`,
bootstrap :meth:`~Metric.unit`) registered by name in :data:`METRICS`; the pure functions underneath are exported
for direct use and testing. Where public harnesses disagree, each module's docstring states the choice and why.

**Reference-identical by default.** The metric a benchmark kind is scored with reproduces the scorer its published
numbers come from, edge cases included, so a search can be compared with a paper's table: ``vqa_accuracy``
(official VQA ``vqaEval.py``; VQAv2), ``vqa_accuracy_evalai`` (the TextVQA ``m4c_evaluator.py`` scorer; TextVQA,
VizWiz), ``anls`` (official DocVQA/InfoVQA script), ``relaxed_accuracy`` (pix2struct ChartQA code), ``pope``
(official POPE / LLaVA ``eval_pope.py``). Our earlier, more forgiving rules stay available as explicitly named
deviations with the suffix ``_lenient`` (:data:`LENIENT_VARIANTS`), and where a harness a paper's numbers came from
scores differently from the official rule, that harness's rule is registered under its name
(:data:`HARNESS_VARIANTS`, e.g. ``pope_lmms_eval``); no benchmark kind uses either by default, a benchmark opts in
with ``data.eval.<name>.metric``.
tests/reference_scorers.py holds independent transcriptions of the reference scorers that the defaults are
fuzzed against.
"""

from __future__ import annotations

from eaglesearch.evaluate.metrics.anls import ANLS, ANLS_LENIENT, ANLS_OFFICIAL, anls, anls_lenient, levenshtein
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
from eaglesearch.evaluate.metrics.normalize import evalai_normalize, vqa_eval_prediction, vqa_normalize
from eaglesearch.evaluate.metrics.ocrbench import OCRBench, fold_fullwidth, ocrbench_match
from eaglesearch.evaluate.metrics.pope import (
    POPE,
    POPE_LENIENT,
    POPE_LMMS_EVAL,
    POPE_OFFICIAL,
    parse_lmms_eval_pope,
    parse_pope_answer,
    parse_yes_no,
    pope_rates,
)
from eaglesearch.evaluate.metrics.relaxed import (
    RELAXED_ACCURACY,
    RELAXED_ACCURACY_LENIENT,
    RelaxedAccuracy,
    relaxed_correct,
    relaxed_correct_lenient,
)
from eaglesearch.evaluate.metrics.vqa import (
    VQA_ACCURACY,
    VQA_ACCURACY_EVALAI,
    VQA_ACCURACY_LENIENT,
    VQAAccuracy,
    vqa_accuracy,
    vqa_accuracy_evalai,
    vqa_accuracy_lenient,
)

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        SYNTHETIC_EXACT_MATCH,
        GQA_EXACT_MATCH,
        VQA_ACCURACY,
        VQA_ACCURACY_EVALAI,
        VQA_ACCURACY_LENIENT,
        ANLS_OFFICIAL,
        ANLS_LENIENT,
        RELAXED_ACCURACY,
        RELAXED_ACCURACY_LENIENT,
        POPE_OFFICIAL,
        POPE_LENIENT,
        POPE_LMMS_EVAL,
        MME(),
        OCRBench(),
        ChoiceAccuracy(),
        MMBenchCircular(),
    )
}

LENIENT_VARIANTS: dict[str, str] = {
    "vqa_accuracy_lenient": "vqa_accuracy",
    "anls_lenient": "anls",
    "relaxed_accuracy_lenient": "relaxed_accuracy",
    "pope_lenient": "pope",
}
"""Each registered deviation (``*_lenient``) and the reference-identical metric it relaxes."""

HARNESS_VARIANTS: dict[str, str] = {
    "pope_lmms_eval": "pope",
}
"""Each registered harness rule (``<metric>_<harness>``) and the official metric it departs from."""


def metric_variants(reference: str) -> list[str]:
    """The registered metrics a benchmark scored by ``reference`` may use instead: itself and its variants."""
    return [reference, *(v for v, r in {**LENIENT_VARIANTS, **HARNESS_VARIANTS}.items() if r == reference)]


def get_metric(name: str) -> Metric:
    """The registered metric called ``name``; a ``KeyError`` lists the registered names otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered metrics: {', '.join(sorted(METRICS))}") from None


__all__ = [
    "ANLS",
    "COGNITION_SUBTASKS",
    "HARNESS_VARIANTS",
    "LENIENT_VARIANTS",
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
    "anls_lenient",
    "choice_accuracy",
    "evalai_normalize",
    "exact_match",
    "extract_choice",
    "fold_fullwidth",
    "get_metric",
    "gqa_exact_match",
    "levenshtein",
    "metric_variants",
    "normalize_answer",
    "normalize_gqa",
    "ocrbench_match",
    "parse_lmms_eval_pope",
    "parse_mme_answer",
    "parse_pope_answer",
    "parse_yes_no",
    "pope_rates",
    "relaxed_correct",
    "relaxed_correct_lenient",
    "vqa_accuracy",
    "vqa_accuracy_evalai",
    "vqa_accuracy_lenient",
    "vqa_eval_prediction",
    "vqa_normalize",
]
