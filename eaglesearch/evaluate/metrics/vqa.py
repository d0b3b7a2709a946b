"""VQA accuracy (VQAv2, TextVQA, VizWiz, OK-VQA): consensus with the human annotators.

Rule (reference/metrics.md §5.1; identical in every harness): with processed prediction ``p`` and processed human
answers ``g_1..g_n``, for each annotator ``i`` take ``min(1, #{j != i : g_j == p} / 3)``; the question's accuracy
is the mean over the ``n`` leave-one-out subsets. With ``n = 10`` and ``m`` annotators matching, this is
0, .3, .6, .9, 1 for ``m`` = 0, 1, 2, 3, >=4. What differs between scorers is how the strings are processed.

Three registered variants; the first two are the reference scorers published numbers come from, bit for bit:

* ``vqa_accuracy`` — **official VQA evaluation** (``GT-Vision-Lab/VQA`` ``vqaEval.py``; VQAv2): the prediction is
  processed by :func:`~eaglesearch.evaluate.metrics.normalize.vqa_eval_prediction`; the human answers get
  ``processPunctuation`` only (no lowercasing, no number words, no article removal), and only when the answers
  are not all identical. So ``"Yes"`` never matches a human answer written ``"Yes"`` (the prediction becomes
  ``"yes"``), as in the official tool; VQAv2 answers are pre-normalized, so this is rare in practice.
* ``vqa_accuracy_evalai`` — **the standard TextVQA scorer** (``TextVQAAccuracyEvaluator`` in LLaVA's
  ``m4c_evaluator.py``; TextVQA, VizWiz): :func:`~eaglesearch.evaluate.metrics.normalize.evalai_normalize` on the
  prediction and on every answer.
* ``vqa_accuracy_lenient`` — **deviation, ours**: :func:`~eaglesearch.evaluate.metrics.normalize.vqa_normalize`
  (all official steps, every period) on the prediction and on every answer, always; the mean is exactly rounded
  (``math.fsum``). More forgiving of casing and punctuation in the answer files, but not the published rule.

Shared choices:

* The reference scorers average the leave-one-out values with a plain left-to-right ``sum(...) / n`` in annotator
  order; the two reference variants do the same, so they agree to the last bit, not just to rounding.
* The official tool leaves out one annotator *record* (each has its own ``answer_id``), i.e. one position, even
  when several annotators gave the same string; positions are what is left out here too.
* Answer counts other than 10 use the same leave-one-out formula (the official tool accepts any count; the TextVQA
  scorer asserts 10). With fewer than 4 answers a perfect prediction cannot reach 1 (``n = 2``: at most 1/3), and
  with one answer it always scores 0, so fewer than 2 answers is rejected as an error: score such benchmarks with
  exact match instead.
* Dataset accuracy = mean over questions, as a fraction. The official tool prints ``round(100 * mean, 2)``; we keep
  the unrounded fraction (rounding is for display).
* TextVQA prompts with or without OCR tokens are a loader/prompt matter; scores are comparable only within one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.metrics.base import MeanMetric, require_references
from eaglesearch.evaluate.metrics.normalize import (
    REFERENCE_PERIOD_LIMIT,
    evalai_normalize,
    process_punctuation,
    vqa_eval_prediction,
    vqa_normalize,
)


def _require_answers(answers: Sequence[str]) -> None:
    if len(answers) < 2:
        raise ValueError(f"VQA accuracy needs at least 2 human answers (got {len(answers)}); leave-one-out over a "
                         "single answer always scores 0 — use exact match for single-reference benchmarks")


def _leave_one_out(prediction: str, answers: Sequence[str]) -> list[float]:
    """Per annotator left out, ``min(1, matches among the others / 3)`` (the reference scripts' ``gtAcc``)."""
    total = sum(a == prediction for a in answers)
    return [min(1.0, (total - (a == prediction)) / 3.0) for a in answers]


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Official VQA evaluation (``vqaEval.py``) accuracy of ``prediction`` against the human ``answers``."""
    _require_answers(answers)
    pred = vqa_eval_prediction(prediction)
    gts = list(answers)
    if len(set(gts)) > 1:
        gts = [process_punctuation(a, REFERENCE_PERIOD_LIMIT) for a in gts]
    accs = _leave_one_out(pred, gts)
    return sum(accs) / len(accs)


def vqa_accuracy_evalai(prediction: str, answers: Sequence[str]) -> float:
    """TextVQA-scorer accuracy (EvalAI answer processing on both sides) of ``prediction`` against ``answers``."""
    _require_answers(answers)
    accs = _leave_one_out(evalai_normalize(prediction), [evalai_normalize(a) for a in answers])
    return sum(accs) / len(accs)


def vqa_accuracy_lenient(prediction: str, answers: Sequence[str]) -> float:
    """Lenient accuracy: :func:`vqa_normalize` on both sides, exactly rounded mean (a deviation; see module)."""
    _require_answers(answers)
    accs = _leave_one_out(vqa_normalize(prediction), [vqa_normalize(a) for a in answers])
    return math.fsum(accs) / len(accs)


class VQAAccuracy(MeanMetric):
    """VQA accuracy of each item under one answer-processing rule (one of the three functions above)."""

    primary = "accuracy"

    def __init__(self, name: str, accuracy: Callable[[str, Sequence[str]], float]) -> None:
        self.name = name
        self._accuracy = accuracy

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        return {"score": self._accuracy(prediction, require_references(item, self.name))}


VQA_ACCURACY = VQAAccuracy("vqa_accuracy", vqa_accuracy)
VQA_ACCURACY_EVALAI = VQAAccuracy("vqa_accuracy_evalai", vqa_accuracy_evalai)
VQA_ACCURACY_LENIENT = VQAAccuracy("vqa_accuracy_lenient", vqa_accuracy_lenient)
