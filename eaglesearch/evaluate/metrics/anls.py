"""ANLS, average normalized Levenshtein similarity (DocVQA, InfoVQA, ST-VQA).

Rule (reference/metrics.md §5.2): per answer ``a``, ``NL = lev(a, p) / max(|a|, |p|)``; question score =
``1 - min NL`` over the answers, zeroed below the threshold τ = 0.5; ANLS = mean over questions.

Two registered variants:

* ``anls`` — **the official DocVQA/InfographicVQA evaluation** as its script computes it (the RRC evaluation
  script, copied by Qwen-VL's ``infographicsvqa_eval.py`` and lmms-eval ``lmms_eval/api/metrics.py::anls``):
  the distance is taken between the *processed* strings (strip, lowercase, runs of whitespace → one space), but
  the denominator is ``max(len(a.upper()), len(p.upper()))`` of the **raw** strings — unstripped, uncollapsed,
  and upper-cased, which changes the length of some strings (``"ß".upper()`` is ``"SS"``). So extra whitespace
  in a raw string makes NL smaller, and a string whose lower-case form is longer than its upper-case form (``"İ"``)
  can push NL above 1 (question score 0). A raw length of 0 gives NL = 0. A similarity of exactly τ is kept
  (``abcd`` vs ``abxy`` → 0.5; the script zeroes only ``< τ``), not the strict ``NL < τ`` of the ST-VQA paper.
* ``anls_lenient`` — **deviation, ours**: the denominator uses the lengths of the processed strings (VLMEvalKit's
  and LLaVA's choice; the textbook definition compares the strings it measures), so the score is exactly
  ``1 - NL`` of what is compared and always in [0, 1]. Otherwise as ``anls``.

Edit distance is :func:`rapidfuzz.distance.Levenshtein.distance` (unit-cost insert, delete, substitute over code
points — the plain edit distance every reference script computes with its own dynamic programme).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rapidfuzz.distance import Levenshtein

from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.metrics.base import MeanMetric, require_references

ANLS_THRESHOLD = 0.5


def levenshtein(a: str, b: str) -> int:
    """Edit distance (unit-cost insert, delete, substitute) between two strings, code point by code point."""
    return Levenshtein.distance(a, b)


def anls_normalize(text: str) -> str:
    """Strip, lowercase, collapse runs of whitespace to one space."""
    return " ".join(text.strip().lower().split())


def _require_answers(answers: Sequence[str]) -> None:
    if not answers:
        raise ValueError("ANLS needs at least one reference answer")


def _thresholded(similarity: float, threshold: float) -> float:
    return similarity if similarity >= threshold else 0.0


def anls(prediction: str, answers: Sequence[str], threshold: float = ANLS_THRESHOLD) -> float:
    """Official ANLS of one prediction: processed strings compared, raw upper-cased lengths as denominator."""
    _require_answers(answers)
    pred = anls_normalize(prediction)
    values = []
    for answer in answers:
        length = max(len(answer.upper()), len(prediction.upper()))
        values.append(levenshtein(anls_normalize(answer), pred) / length if length else 0.0)
    return _thresholded(1 - min(values), threshold)


def normalized_levenshtein(answer: str, prediction: str) -> float:
    """``lev / max(len)`` on the processed strings; 0.0 when both are empty (the lenient variant's NL)."""
    a, p = anls_normalize(answer), anls_normalize(prediction)
    longest = max(len(a), len(p))
    return levenshtein(a, p) / longest if longest else 0.0


def anls_lenient(prediction: str, answers: Sequence[str], threshold: float = ANLS_THRESHOLD) -> float:
    """Lenient ANLS: ``1 - min NL`` with NL over the processed strings' own lengths (a deviation; see module)."""
    _require_answers(answers)
    return _thresholded(1.0 - min(normalized_levenshtein(a, prediction) for a in answers), threshold)


class ANLS(MeanMetric):
    primary = "anls"

    def __init__(self, name: str, similarity: Callable[[str, Sequence[str]], float]) -> None:
        self.name = name
        self._similarity = similarity

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        return {"score": self._similarity(prediction, require_references(item, self.name))}


ANLS_OFFICIAL = ANLS("anls", anls)
ANLS_LENIENT = ANLS("anls_lenient", anls_lenient)
