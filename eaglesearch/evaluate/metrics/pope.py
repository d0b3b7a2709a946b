"""POPE (object hallucination): binary yes/no with "yes" as the positive class.

Rule (reference/metrics.md §5.4): over parsed predictions, ``accuracy = (TP + TN) / N``, ``precision = TP / (TP +
FP)``, ``recall = TP / (TP + FN)``, ``F1 = 2PR / (P + R)``, ``yes_ratio`` = fraction of *predictions* that are
"yes". Reported per split (random / popular / adversarial).

Two registered variants, differing only in how a free-text answer is read as yes/no:

* ``pope`` — **the official POPE rule** (the POPE repository's ``evaluate.py``, copied by LLaVA's
  ``llava/eval/eval_pope.py``; :func:`parse_pope_answer`): keep the text before the first ``.``, delete commas,
  split on single spaces (``str.split(" ")``, not on any whitespace); the answer is "no" if a token is exactly
  ``No``, ``not`` or ``no``, else "yes". So every answer is yes or no: ``Not sure``, ``Nope`` and ``There is a
  dog.`` count as "yes" (``Not`` is not ``not``), ``NO`` counts as "yes", ``The answer is yes. No doubt.`` is
  "yes" (only the first sentence is read), and ``unknown_rate`` is always 0.
* ``pope_lenient`` — **deviation, ours**: VLMEvalKit's ``YOrN_Extraction`` (:func:`parse_yes_no`): lowercase, VQA
  ``processPunctuation``, split on whitespace; "yes" if the token ``yes`` occurs and ``no`` does not, "no" for
  the reverse, else unknown (``None``). It never guesses: ambiguous or off-format answers are *counted*
  (``unknown_rate``) rather than silently turned into "yes". An unknown prediction is wrong for accuracy and is
  "not yes" for precision/recall (VLMEvalKit's ``POPE_rating``): a ground-truth "yes" answered unknown is a miss
  in the recall denominator, a ground-truth "no" answered unknown is neither a TP nor an FP. Counts:
  ``tp + fp + tn + fn + unknown = N`` where ``fn`` counts only explicit "no" answers and
  ``recall = tp / (tp + fn + unknown_pos)`` = TP / all positives.

Shared choices:

* ``yes_ratio`` counts predictions (the official/LLaVA definition); lmms-eval's ``pope_aggregate_yes_ratio`` counts
  the ground-truth labels (always about 0.5), a bug we do not reproduce.
* Ground-truth labels must read ``yes`` or ``no`` (case, surrounding whitespace and a trailing period ignored);
  anything else is an error naming the item. (The official script silently counts every label other than the
  exact string ``no`` as positive; POPE's label files hold only ``yes``/``no``, so valid files score identically.)
* Undefined rates (no "yes" predicted, no positives) report 0.0 and F1 is 0.0 when P + R = 0, where the official
  script stops with ``ZeroDivisionError``.
* Splits come from ``meta["category"]`` (lmms-eval's POPE field name): every rate is also reported as
  ``"<rate>/<split>"``, plus ``f1_category_mean``, the mean F1 over splits (a user reports the LLaVA-1.5 paper
  number matches this, LLaVA issue #626). The primary number is the pooled ``f1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

from eaglesearch.evaluate.items import BenchmarkItem, ScoredItem
from eaglesearch.evaluate.metrics.base import (
    Metric,
    by_category,
    item_value,
    mean,
    require_items,
    require_references,
    safe_ratio,
    with_category_keys,
)
from eaglesearch.evaluate.metrics.normalize import process_punctuation

YesNo = Literal["yes", "no"]


def parse_yes_no(text: str) -> YesNo | None:
    """VLMEvalKit ``YOrN_Extraction``: "yes"/"no" if exactly one of the two tokens occurs, else ``None``."""
    words = process_punctuation(text.lower()).split()
    has_yes, has_no = "yes" in words, "no" in words
    if has_yes and not has_no:
        return "yes"
    if has_no and not has_yes:
        return "no"
    return None


def parse_pope_answer(text: str) -> YesNo:
    """The official POPE / LLaVA ``eval_pope.py`` reading: "no" iff the first sentence has a ``No``/``not``/``no`` token."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if "No" in words or "not" in words or "no" in words else "yes"


def yes_no_label(reference: str, metric: str, item_id: str) -> YesNo:
    """A ground-truth label ``yes``/``no`` (case and surrounding whitespace/period ignored)."""
    label = reference.strip().lower().rstrip(".")
    if label not in ("yes", "no"):
        raise ValueError(f"metric {metric!r}: item {item_id!r} has reference {reference!r}; expected 'yes' or 'no'")
    return "yes" if label == "yes" else "no"


def pope_rates(scored: Sequence[ScoredItem], metric: str = "pope") -> dict[str, float]:
    """Counts and rates over scored POPE items (values ``label_yes``, ``pred_yes``, ``pred_no``)."""
    require_items(scored, metric)
    label_yes = [item_value(s, "label_yes", metric) for s in scored]
    pred_yes = [item_value(s, "pred_yes", metric) for s in scored]
    pred_no = [item_value(s, "pred_no", metric) for s in scored]
    n = float(len(scored))
    tp = math.fsum(ly * py for ly, py in zip(label_yes, pred_yes, strict=True))
    fp = math.fsum((1.0 - ly) * py for ly, py in zip(label_yes, pred_yes, strict=True))
    tn = math.fsum((1.0 - ly) * pn for ly, pn in zip(label_yes, pred_no, strict=True))
    fn = math.fsum(ly * pn for ly, pn in zip(label_yes, pred_no, strict=True))
    positives = math.fsum(label_yes)
    unknown = math.fsum(1.0 - py - pn for py, pn in zip(pred_yes, pred_no, strict=True))
    precision = safe_ratio(tp, tp + fp)
    recall = safe_ratio(tp, positives)
    return {
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": safe_ratio(2.0 * precision * recall, precision + recall),
        "yes_ratio": (tp + fp) / n,
        "unknown_rate": unknown / n,
        "tp": tp, "fp": fp, "tn": tn, "fn": fn, "unknown": unknown, "n": n,
    }


class POPE(Metric):
    primary = "f1"

    def __init__(self, name: str, parse: Callable[[str], YesNo | None]) -> None:
        self.name = name
        self._parse = parse

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        label = yes_no_label(require_references(item, self.name)[0], self.name, item.id)
        parsed = self._parse(prediction)
        return {
            "score": float(parsed == label),
            "label_yes": float(label == "yes"),
            "pred_yes": float(parsed == "yes"),
            "pred_no": float(parsed == "no"),
        }

    def aggregate(self, scored: Sequence[ScoredItem]) -> dict[str, float]:
        out = pope_rates(scored, self.name)
        categories = by_category(scored)
        for category, members in categories.items():
            rates = pope_rates(members, self.name)
            out.update(with_category_keys({k: rates[k] for k in _RATE_KEYS}, category))
        if categories:
            out["f1_category_mean"] = mean(out[f"f1/{c}"] for c in categories)
        return out


_RATE_KEYS = ("accuracy", "precision", "recall", "f1", "yes_ratio", "unknown_rate")

POPE_OFFICIAL = POPE("pope", parse_pope_answer)
POPE_LENIENT = POPE("pope_lenient", parse_yes_no)
