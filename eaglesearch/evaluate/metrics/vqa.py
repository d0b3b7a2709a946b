"""VQA accuracy (VQAv2, TextVQA, VizWiz, OK-VQA): consensus with the human annotators.

Rule (reference/metrics.md §5.1; identical in every harness): with normalized prediction ``p`` and normalized
human answers ``g_1..g_n``, for each annotator ``i`` take ``min(1, #{j != i : g_j == p} / 3)``; the question's
accuracy is the mean over the ``n`` leave-one-out subsets. With ``n = 10`` and ``m`` annotators matching, this is
0, .3, .6, .9, 1 for ``m`` = 0, 1, 2, 3, >=4.

Pinned choices:

* Normalization: :func:`~eaglesearch.evaluate.metrics.normalize.vqa_normalize` on the prediction and on every
  answer (lmms-eval VQAv2 / VLMEvalKit, with the official period behaviour; see that module).
* Answer counts other than 10 use the same leave-one-out formula (what every harness computes). With fewer than
  4 answers a perfect prediction cannot reach 1 (``n = 2``: at most 1/3), and with one answer it always scores 0,
  so fewer than 2 answers is rejected as an error: score such benchmarks with exact match instead.
* The closed form is not used as a shortcut: the loop *is* the definition, and ties it to every ``n``.
* Dataset accuracy = mean over questions, as a fraction (harnesses print ×100).
* TextVQA prompts with or without OCR tokens are a loader/prompt matter; scores are comparable only within one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.metrics.base import MeanMetric, require_references
from eaglesearch.evaluate.metrics.normalize import vqa_normalize


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Leave-one-out VQA accuracy of ``prediction`` against the human ``answers`` (normalized here)."""
    if len(answers) < 2:
        raise ValueError(f"VQA accuracy needs at least 2 human answers (got {len(answers)}); leave-one-out over a "
                         "single answer always scores 0 — use exact match for single-reference benchmarks")
    pred = vqa_normalize(prediction)
    gts = [vqa_normalize(a) for a in answers]
    matches = [g == pred for g in gts]
    total = sum(matches)
    # annotator i left out: the others match `total - matches[i]` times
    return math.fsum(min(1.0, (total - int(m)) / 3.0) for m in matches) / len(gts)


class VQAAccuracy(MeanMetric):
    name = "vqa_accuracy"
    primary = "accuracy"

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        return {"score": vqa_accuracy(prediction, require_references(item, self.name))}
