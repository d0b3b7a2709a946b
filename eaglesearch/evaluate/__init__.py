"""Evaluation: benchmark items, pinned metrics, generation and likelihood scoring, intervals, aggregates.

Pure parts (``metrics``, ``uncertainty``, ``groups``, ``predictions``) import without torch; the model-facing
names (``evaluate``, ``EvalOutcome``, ``Prediction``) load lazily on first use.
"""

from __future__ import annotations

from typing import Any

from eaglesearch.evaluate.aggregate import objective
from eaglesearch.evaluate.exact_match import exact_match, normalize_answer

_LAZY = {"EvalOutcome", "Prediction", "evaluate"}

__all__ = ["EvalOutcome", "Prediction", "evaluate", "exact_match", "normalize_answer", "objective"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from eaglesearch.evaluate import generate

        return getattr(generate, name)
    raise AttributeError(f"module 'eaglesearch.evaluate' has no attribute '{name}'")
