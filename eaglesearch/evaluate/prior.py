"""The answer-prior baseline: the score of always giving the most frequent training answer.

A model that learned nothing from its images still learns the answer distribution of its training data; a table
without this row cannot tell "the model reads images" from "the model guesses well". For each benchmark the prior
answer is the most frequent final answer among the training conversations of the same task — for the synthetic
world a benchmark *is* a task, and its training samples carry the task in their id (``count-train-00012``) — and
among all training conversations when the benchmark has no task of its own in the training data. Ties go to the
alphabetically first answer, so the baseline is deterministic. The predictions are scored by the benchmark's own
metric and summarized exactly like a model's (:func:`~eaglesearch.evaluate.summary.summarize`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from eaglesearch.data import Sample
from eaglesearch.evaluate.metrics import get_metric
from eaglesearch.evaluate.predictions import PredictionRecord

ANSWER_PRIOR = "answer prior"
"""The label of the baseline row in every report."""


def _final_answer(sample: Sample) -> str | None:
    if sample.turns and sample.turns[-1][0] == "assistant":
        return sample.turns[-1][1].strip()
    return None


def _most_frequent(answers: Sequence[str]) -> str:
    counts = Counter(answers)
    return min(counts, key=lambda a: (-counts[a], a))


def prior_answers(train: Sequence[Sample], benchmarks: Sequence[str]) -> dict[str, str]:
    """Benchmark name → its prior answer (see the module docstring). Empty when no training sample has an answer."""
    answered = [(s.id, a) for s in train if (a := _final_answer(s))]
    if not answered:
        return {}
    overall = _most_frequent([a for _, a in answered])
    out = {}
    for name in benchmarks:
        own = [a for sample_id, a in answered if sample_id.startswith(f"{name}-")]
        out[name] = _most_frequent(own) if own else overall
    return out


def prior_records(train: Sequence[Sample], benchmarks: Sequence) -> list[PredictionRecord]:
    """One prediction record per benchmark item, predicting the benchmark's prior answer."""
    answers = prior_answers(train, [b.name for b in benchmarks])
    records = []
    for benchmark in benchmarks:
        if benchmark.name not in answers:
            continue
        metric = get_metric(benchmark.metric)
        for item in benchmark.items:
            records.append(PredictionRecord(metric=metric.name, scoring="prior",
                                            scored=metric.score_item(answers[benchmark.name], item)))
    return records
