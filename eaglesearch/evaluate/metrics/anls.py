"""ANLS, average normalized Levenshtein similarity (DocVQA, InfoVQA, ST-VQA).

Rule (reference/metrics.md §5.2): per answer ``a``, ``NL = lev(a, p) / max(|a|, |p|)``; similarity ``1 - NL``;
question score = best similarity over the answers, zeroed below the threshold τ = 0.5; ANLS = mean over questions.

Pinned choices, where the harnesses disagree:

* Normalization (lmms-eval ``anls`` = VLMEvalKit ``anls_compute``): strip, lowercase, collapse internal whitespace
  to single spaces, on both strings. (LLaVA's ``STVQAANLSEvaluator`` does not collapse whitespace.)
* Denominator: lengths of the *normalized* strings (VLMEvalKit and LLaVA; the textbook definition compares the
  strings it measures). lmms-eval divides by the raw lengths, which only differs when a string carries extra
  whitespace (raw is longer, so lmms-eval is slightly more lenient there). With normalized lengths the score is
  exactly 1 - NL and always in [0, 1].
* Threshold boundary: a similarity of exactly τ is **kept** (lmms-eval, VLMEvalKit and LLaVA all keep it:
  ``abcd`` vs ``abxy`` → 0.5), not the strict ``NL < τ`` of the ST-VQA paper.
* Two empty strings have NL = 0 (similarity 1), as in every harness.
"""

from __future__ import annotations

from collections.abc import Sequence

from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.metrics.base import MeanMetric, require_references

ANLS_THRESHOLD = 0.5


def levenshtein(a: str, b: str) -> int:
    """Edit distance (unit-cost insert, delete, substitute), two-row dynamic programme."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls_normalize(text: str) -> str:
    """Strip, lowercase, collapse runs of whitespace to one space."""
    return " ".join(text.strip().lower().split())


def normalized_levenshtein(answer: str, prediction: str) -> float:
    """``lev / max(len)`` on the normalized strings; 0.0 when both are empty."""
    a, p = anls_normalize(answer), anls_normalize(prediction)
    longest = max(len(a), len(p))
    return levenshtein(a, p) / longest if longest else 0.0


def anls(prediction: str, answers: Sequence[str], threshold: float = ANLS_THRESHOLD) -> float:
    """ANLS of one prediction: ``1 - min NL`` over the answers, or 0.0 if that is below ``threshold``."""
    if not answers:
        raise ValueError("ANLS needs at least one reference answer")
    similarity = 1.0 - min(normalized_levenshtein(a, prediction) for a in answers)
    return similarity if similarity >= threshold else 0.0


class ANLS(MeanMetric):
    name = "anls"
    primary = "anls"

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        return {"score": anls(prediction, require_references(item, self.name))}
