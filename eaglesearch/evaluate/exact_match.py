"""Exact-match accuracy for short answers: the synthetic benchmark's metric.

Normalization (pinned): strip whitespace, lowercase, drop one trailing period. Nothing else: "two" ≠ "2".
"""

from __future__ import annotations


def normalize_answer(text: str) -> str:
    text = text.strip().lower()
    return text[:-1].rstrip() if text.endswith(".") else text


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))
