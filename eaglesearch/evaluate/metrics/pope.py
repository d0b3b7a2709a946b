"""POPE (object hallucination): binary yes/no with "yes" as the positive class.

Rule (reference/metrics.md §5.4): over parsed predictions, ``accuracy = (TP + TN) / N``, ``precision = TP / (TP +
FP)``, ``recall = TP / (TP + FN)``, ``F1 = 2PR / (P + R)``, ``yes_ratio`` = fraction of *predictions* that are
"yes". Reported per split (random / popular / adversarial).

Three registered variants, differing in how a free-text answer is read as yes/no (and, for lmms-eval, recall):

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
* ``pope_lmms_eval`` — **lmms-eval's rule** (``lmms_eval/tasks/pope/utils.py``, the harness Eagle's published numbers
  come from; :func:`parse_lmms_eval_pope`): the answer is lower-cased and stripped of surrounding whitespace and must
  then be exactly ``yes`` or ``no``; anything else (``Yes.``, ``No, there is none``) is unknown, wrong for accuracy.
  Lower-casing is where it parts from the official rule: ``NO`` is "no" here and "yes" officially. Recall follows
  lmms-eval's ``pope_aggregate_recall``: ``tp / (tp + fn)`` over *explicit* answers only (a ground-truth "yes"
  answered off-format leaves the denominator), unlike ``pope_lenient``. Precision is ``tp / (tp + fp)`` in all
  three. ``yes_ratio`` still counts predictions (see below), not lmms-eval's ground-truth count.

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


def parse_lmms_eval_pope(text: str) -> YesNo | None:
    """lmms-eval ``pope_process_results``: ``text.lower().strip()`` if that is exactly "yes" or "no", else ``None``."""
    answer = text.lower().strip()
    return answer if answer in ("yes", "no") else None  # type: ignore[return-value]


def yes_no_label(reference: str, metric: str, item_id: str) -> YesNo:
    """A ground-truth label ``yes``/``no`` (case and surrounding whitespace/period ignored)."""
    label = reference.strip().lower().rstrip(".")
    if label not in ("yes", "no"):
        raise ValueError(f"metric {metric!r}: item {item_id!r} has reference {reference!r}; expected 'yes' or 'no'")
    return "yes" if label == "yes" else "no"


def pope_rates(scored: Sequence[ScoredItem], metric: str = "pope", *,
               recall_over_answered: bool = False) -> dict[str, float]:
    """Counts and rates over scored POPE items (values ``label_yes``, ``pred_yes``, ``pred_no``). Recall is over
    every positive, or with ``recall_over_answered`` (lmms-eval) over the positives answered an explicit yes/no."""
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
    recall = safe_ratio(tp, tp + fn if recall_over_answered else positives)
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

    def __init__(self, name: str, parse: Callable[[str], YesNo | None], *, recall_over_answered: bool = False) -> None:
        self.name = name
        self._parse = parse
        self._recall_over_answered = recall_over_answered

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
        out = pope_rates(scored, self.name, recall_over_answered=self._recall_over_answered)
        categories = by_category(scored)
        for category, members in categories.items():
            rates = pope_rates(members, self.name, recall_over_answered=self._recall_over_answered)
            out.update(with_category_keys({k: rates[k] for k in _RATE_KEYS}, category))
        if categories:
            out["f1_category_mean"] = mean(out[f"f1/{c}"] for c in categories)
        return out


_RATE_KEYS = ("accuracy", "precision", "recall", "f1", "yes_ratio", "unknown_rate")

POPE_OFFICIAL = POPE("pope", parse_pope_answer)
POPE_LENIENT = POPE("pope_lenient", parse_yes_no)
POPE_LMMS_EVAL = POPE("pope_lmms_eval", parse_lmms_eval_pope, recall_over_answered=True)
