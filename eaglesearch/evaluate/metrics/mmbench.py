"""MMBench circular evaluation: a question counts only if every circular shift of its options is answered right.

Rule (reference/metrics.md §5.8): an N-option question is asked N times with the options rotated; each pass has
its own ground-truth letter; the question is correct only if all passes are. Overall = fraction of questions.

Pinned choices, where the harnesses disagree:

* A question's passes share ``item.meta["group"]`` (the loader's rendering of VLMEvalKit's ``index % 10**6``, or
  Cambrian's ``source_id``); each pass is its own item with its own letter in ``references[0]``.
* Letters are read with :func:`~eaglesearch.evaluate.metrics.choice.extract_choice` (VLMEvalKit ``can_infer``
  without a judge). A pass whose letter cannot be read is wrong, so its question is wrong: this is VLMEvalKit's
  ``exact_matching`` mode (no LLM judge, no random letter), deterministic by construction.
* ``circular_accuracy`` (primary) = fraction of groups with every pass correct; ``plain_accuracy`` = mean over
  groups of the fraction of its passes correct (ordinary per-item accuracy when all questions have the same
  number of options; group-weighted so that circular ≤ plain always holds). VanillaEval numbers from the official
  server (first pass only) are a different quantity. Per ``meta["category"]``: ``circular_accuracy/<category>``.
* Resampling unit: the group (a bootstrap draws whole questions). Subsets/resamples follow ``base.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from eaglesearch.evaluate.items import BenchmarkItem, ScoredItem
from eaglesearch.evaluate.metrics.base import (
    Metric,
    by_category,
    group_all_correct,
    group_count,
    group_mean,
    require_items,
    require_meta,
)
from eaglesearch.evaluate.metrics.choice import answer_letter, choice_accuracy

GROUP_KEY = "group"


class MMBenchCircular(Metric):
    name = "mmbench_circular"
    primary = "circular_accuracy"

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        require_meta(item, GROUP_KEY, self.name)
        answer = answer_letter(item, self.name)
        return {"score": choice_accuracy(prediction, answer, item.letters, item.choices)}

    def unit(self, item: BenchmarkItem) -> str:
        return require_meta(item, GROUP_KEY, self.name)

    def _group(self, scored: ScoredItem) -> str:
        return self.unit(scored.item)

    def aggregate(self, scored: Sequence[ScoredItem]) -> dict[str, float]:
        require_items(scored, self.name)
        out = {
            "circular_accuracy": group_all_correct(scored, self._group, self.name),
            "plain_accuracy": group_mean(scored, self._group, self.name),
            "groups": group_count(scored, self._group, self.name),
            "n": float(len(scored)),
        }
        for category, members in by_category(scored).items():
            out[f"circular_accuracy/{category}"] = group_all_correct(members, self._group, self.name)
        return out
