"""OCRBench (v1): an answer counts if any reference string is a substring of the prediction.

Rule (reference/metrics.md §5.6): lowercase, strip, ``\\n`` → space on both, then substring test; handwritten
math expressions (HME100k) instead keep case and delete every space. Final score = number correct (max 1000).

Pinned choices, where the harnesses disagree:

* **Full-width folding** (lmms-eval, ``test/eval/test_ocrbench.py``) on both strings, non-HME only: U+FF01–U+FF5E
  → their ASCII forms and the ideographic space U+3000 → space. Nothing else: no NFKC, so ``①``, ``²``, ``Ⅳ``,
  ``㎏`` do *not* match ``1``, ``2``, ``IV``, ``kg`` (their test pins this too). VLMEvalKit/Cambrian do not fold.
* **HME branch** (VLMEvalKit/Cambrian): no lowercasing on either side, no folding; ``\\n`` → space, then all spaces
  removed. (lmms-eval lowercases the prediction but not the reference here — an asymmetry we do not copy.) An
  item is HME if ``meta["category"] == "Handwritten Mathematical Expression Recognition"`` (VLMEvalKit/Cambrian)
  or ``meta["dataset"] == "HME100k"`` (lmms-eval); both fields name the same 100 items.
* Substring matching keeps its known false positives (``12`` in ``123``): it is the benchmark's definition.
* Aggregate: ``correct`` (count), ``n``, ``accuracy`` = correct / n, and ``score_1000`` = 1000 · accuracy, the
  primary number (equal to the count on the full 1000 items, comparable on subsets); plus ``correct/<category>``
  per question type and ``correct/Text Recognition`` (the six recognition types, max 300).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from eaglesearch.evaluate.items import BenchmarkItem, ScoredItem
from eaglesearch.evaluate.metrics.base import Metric, by_category, item_value, require_items, require_references

HME_CATEGORY = "Handwritten Mathematical Expression Recognition"
HME_DATASET = "HME100k"
TEXT_RECOGNITION_CATEGORIES: tuple[str, ...] = (
    "Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
    "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition",
)
_FULLWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def fold_fullwidth(text: str) -> str:
    """Full-width ASCII forms (U+FF01–U+FF5E) and the ideographic space → ASCII; nothing else changes."""
    return text.translate(_FULLWIDTH)


def _normalize(text: str, hme: bool) -> str:
    if hme:
        return text.strip().replace("\n", " ").replace(" ", "")
    return fold_fullwidth(text).lower().strip().replace("\n", " ")


def ocrbench_match(prediction: str, answers: Sequence[str], hme: bool = False) -> bool:
    """Whether any normalized answer is a substring of the normalized prediction."""
    pred = _normalize(prediction, hme)
    return any(_normalize(a, hme) in pred for a in answers)


def is_hme(item: BenchmarkItem) -> bool:
    return item.meta.get("category") == HME_CATEGORY or item.meta.get("dataset") == HME_DATASET


class OCRBench(Metric):
    name = "ocrbench"
    primary = "score_1000"

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        return {"score": float(ocrbench_match(prediction, require_references(item, self.name), is_hme(item)))}

    def aggregate(self, scored: Sequence[ScoredItem]) -> dict[str, float]:
        require_items(scored, self.name)
        correct = math.fsum(item_value(s, "score", self.name) for s in scored)
        n = float(len(scored))
        out = {"correct": correct, "n": n, "accuracy": correct / n, "score_1000": 1000.0 * correct / n}
        categories = by_category(scored)
        for category, members in categories.items():
            out[f"correct/{category}"] = math.fsum(item_value(s, "score", self.name) for s in members)
        recognition = [out[f"correct/{c}"] for c in TEXT_RECOGNITION_CATEGORIES if c in categories]
        if recognition:
            out["correct/Text Recognition"] = math.fsum(recognition)
        return out
