"""Relaxed accuracy (ChartQA; pix2struct / Methani et al. 2020).

Rule (reference/metrics.md §5.3): if prediction and target both parse as numbers (a trailing ``%`` means
value / 100) and the target is non-zero, correct iff ``|p - t| / |t| <= tolerance`` (5 %); otherwise correct iff
the strings are equal ignoring case. Several targets: correct if correct against any (pix2struct's max over the
targets). Aggregate: mean correctness; ChartQA's ``human`` / ``augmented`` splits come out as per-category
numbers when the loader puts the split in ``meta["category"]`` (``relaxed_accuracy/human``, ...).

Two registered variants:

* ``relaxed_accuracy`` — **the reference code** (pix2struct ``relaxed_correctness``; lmms-eval's ChartQA copy is
  the same function with the arguments in ``(prediction, target)`` order, which is ours), including its float
  parsing as it behaves:

  - ``_to_float``: ``float(text.rstrip("%")) / 100`` if the text *ends* with ``%``, else ``float(text)``, ``None``
    on ``ValueError``. So surrounding whitespace is tolerated by ``float`` (``"12.0 "`` parses), but ``"12% "``
    does not end with ``%`` and is not a number; ``"12%%"`` is 0.12; ``"1_000"`` is 1000 and ``"1,000"`` is not
    a number; ``nan``/``inf`` (any case) parse as numbers.
  - The numeric path needs a truthy target: a zero target takes the string path (``"0"`` matches only ``"0"``),
    while a NaN target is truthy and takes the numeric path, where every comparison is false (``"nan"`` vs
    ``"NaN"`` is wrong); ``inf`` vs ``inf`` is wrong too (``inf - inf`` is NaN).
  - The string path compares the raw strings, lower-cased, unstripped (``"Yes\\n"`` vs ``"yes"`` is wrong).
* ``relaxed_accuracy_lenient`` — **deviation, ours**: both strings stripped before parsing and before the string
  comparison, and non-finite numbers (``nan``, ``inf``) treated as text (string equality) instead of compared as
  numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.metrics.base import MeanMetric, require_references

RELAXED_TOLERANCE = 0.05


def reference_float(text: str) -> float | None:
    """pix2struct ``_to_float``: a trailing ``%`` means /100; ``None`` where ``float`` raises ``ValueError``."""
    try:
        return float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return None


def relaxed_correct(prediction: str, target: str, tolerance: float = RELAXED_TOLERANCE) -> bool:
    """pix2struct ``relaxed_correctness``: within ``tolerance`` of a non-zero numeric target, else equal ignoring case."""
    p, t = reference_float(prediction), reference_float(target)
    if p is not None and t:
        return abs(p - t) / abs(t) <= tolerance
    return prediction.lower() == target.lower()


def parse_number(text: str) -> float | None:
    """The lenient variant's parse: stripped, a trailing ``%`` meaning /100; ``None`` if not a finite number."""
    value = reference_float(text.strip())
    return value if value is not None and math.isfinite(value) else None


def relaxed_correct_lenient(prediction: str, target: str, tolerance: float = RELAXED_TOLERANCE) -> bool:
    """Relaxed correctness on stripped strings, non-finite numbers as text (a deviation; see module)."""
    pred, tgt = prediction.strip(), target.strip()
    p, t = parse_number(pred), parse_number(tgt)
    if p is not None and t is not None and t != 0.0:
        return abs(p - t) / abs(t) <= tolerance
    return pred.lower() == tgt.lower()


class RelaxedAccuracy(MeanMetric):
    primary = "relaxed_accuracy"

    def __init__(self, name: str, correct: Callable[[str, str], bool]) -> None:
        self.name = name
        self._correct = correct

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        targets = require_references(item, self.name)
        return {"score": float(any(self._correct(prediction, t) for t in targets))}


RELAXED_ACCURACY = RelaxedAccuracy("relaxed_accuracy", relaxed_correct)
RELAXED_ACCURACY_LENIENT = RelaxedAccuracy("relaxed_accuracy_lenient", relaxed_correct_lenient)
