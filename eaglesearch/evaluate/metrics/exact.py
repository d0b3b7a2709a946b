"""Exact match of a short answer against its reference(s), under one pinned normalization per benchmark family.

One metric (:class:`ExactMatch`), two registered normalizations:

* ``exact_match`` — the synthetic benchmark's metric. Pinned: strip whitespace, lowercase, drop one trailing
  period (and the whitespace before it). Nothing else: ``"two"`` ≠ ``"2"``.
* ``gqa_exact_match`` — GQA (reference/metrics.md §5.7). The official ``eval.py`` compares strings exactly and
  expects lowercase, punctuation-free predictions; harnesses differ in how they get there (LLaVA/Cambrian: rstrip
  ``.`` + lowercase; vlm-evaluation: drop all punctuation + lowercase; VLMEvalKit: strip + lowercase).
  Pinned: **lmms-eval's ``exact_match`` with ``ignore_case`` and ``ignore_punctuation``** (the harness Eagle's
  numbers come from): lowercase and delete every ``string.punctuation`` character on both sides; no article
  removal (``"the table"`` ≠ ``"table"``), hyphens vanish (``"T-shirt"`` = ``"tshirt"``), and whitespace is *not*
  stripped by the metric (``"man "`` ≠ ``"man"``). The prediction's surrounding whitespace is stripped before the
  metric, as lmms-eval's model wrappers strip decoded text before any metric sees it.

Several references: correct if any matches.
"""

from __future__ import annotations

import string
from collections.abc import Callable

from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.metrics.base import MeanMetric, require_references

_PUNCTUATION_TABLE = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Synthetic-benchmark normalization: strip, lowercase, drop one trailing period."""
    text = text.strip().lower()
    return text[:-1].rstrip() if text.endswith(".") else text


def exact_match(prediction: str, reference: str) -> float:
    """1.0 if prediction and reference agree after :func:`normalize_answer`, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def normalize_gqa(text: str) -> str:
    """lmms-eval ``exact_match(ignore_case=True, ignore_punctuation=True)``: lowercase, delete ASCII punctuation."""
    return text.lower().translate(_PUNCTUATION_TABLE)


def gqa_exact_match(prediction: str, reference: str) -> float:
    """1.0 if prediction and reference agree after :func:`normalize_gqa` (no whitespace stripping), else 0.0."""
    return float(normalize_gqa(prediction) == normalize_gqa(reference))


def _strip(text: str) -> str:
    return text.strip()


def _identity(text: str) -> str:
    return text


class ExactMatch(MeanMetric):
    """Accuracy by exact match: ``match(prepare(prediction), reference)`` maxed over the references."""

    primary = "accuracy"

    def __init__(self, name: str, match: Callable[[str, str], float],
                 prepare: Callable[[str], str] = _identity) -> None:
        self.name = name
        self._match = match
        self._prepare = prepare

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        pred = self._prepare(prediction)
        return {"score": max(self._match(pred, ref) for ref in require_references(item, self.name))}


SYNTHETIC_EXACT_MATCH = ExactMatch("exact_match", exact_match)
GQA_EXACT_MATCH = ExactMatch("gqa_exact_match", gqa_exact_match, prepare=_strip)
