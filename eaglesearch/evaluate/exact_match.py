"""Exact-match accuracy for short answers: the synthetic benchmark's metric.

Normalization (pinned): strip whitespace, lowercase, drop one trailing period. Nothing else: "two" ≠ "2".
The implementation lives in :mod:`eaglesearch.evaluate.metrics.exact` (one implementation per metric); this
module re-exports it for existing callers.
"""

from __future__ import annotations

from eaglesearch.evaluate.metrics.exact import exact_match, normalize_answer

__all__ = ["exact_match", "normalize_answer"]
