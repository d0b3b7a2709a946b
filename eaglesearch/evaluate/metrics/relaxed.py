"""Relaxed accuracy (ChartQA; pix2struct / Methani et al. 2020).

Rule (reference/metrics.md §5.3): if prediction and target both parse as numbers (a trailing ``%`` means
value / 100) and the target is non-zero, correct iff ``|p - t| / |t| <= tolerance`` (5 %); otherwise correct iff
the strings are equal ignoring case.

Pinned choices, where the harnesses disagree:

* Argument order is ``(prediction, target)`` (lmms-eval ``relaxed_correctness``; VLMEvalKit reverses it).
* ``%`` handling as in pix2struct/lmms-eval/VLMEvalKit (Cambrian has none): ``"12%"`` vs ``"0.12"`` is correct,
  ``"45.2%"`` vs ``"45.2"`` is not.
* A zero target takes the string path (``"0"`` matches only ``"0"``, not ``"0.0"``), as in lmms-eval/VLMEvalKit.
* Both strings are stripped before parsing and before the string comparison (VLMEvalKit strips the
  prediction; lmms-eval relies on ``float()`` ignoring surrounding whitespace but compares strings unstripped,
  which fails ``"Yes\\n"`` vs ``"yes"`` for no reason).
* Numbers parse with Python ``float`` as in every harness: thousands separators are not handled
  (``"1,000"`` vs ``"1000"`` is wrong). Non-finite parses (``nan``, ``inf``) are treated as non-numeric, so they
  fall back to string equality instead of comparing NaNs.
* Several targets: correct if correct against any (VLMEvalKit's max over the answer list).
* Aggregate: mean correctness; ChartQA's ``human`` / ``augmented`` splits come out as per-category numbers when
  the loader puts the split in ``meta["category"]`` (``relaxed_accuracy/human``, ``relaxed_accuracy/augmented``).
"""

from __future__ import annotations

import math

from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.metrics.base import MeanMetric, require_references

RELAXED_TOLERANCE = 0.05


def parse_number(text: str) -> float | None:
    """``float(text)``, with a trailing ``%`` meaning /100; ``None`` if not a finite number."""
    text = text.strip()
    try:
        value = float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def relaxed_correct(prediction: str, target: str, tolerance: float = RELAXED_TOLERANCE) -> bool:
    """Whether ``prediction`` is within ``tolerance`` relative error of a numeric ``target``, else equal to it."""
    pred, tgt = prediction.strip(), target.strip()
    p, t = parse_number(pred), parse_number(tgt)
    if p is not None and t is not None and t != 0.0:
        return abs(p - t) / abs(t) <= tolerance
    return pred.lower() == tgt.lower()


class RelaxedAccuracy(MeanMetric):
    name = "relaxed_accuracy"
    primary = "relaxed_accuracy"

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        targets = require_references(item, self.name)
        return {"score": float(any(relaxed_correct(prediction, t) for t in targets))}
