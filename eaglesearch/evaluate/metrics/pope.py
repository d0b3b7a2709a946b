"""POPE (object hallucination): binary yes/no with "yes" as the positive class.

Rule (reference/metrics.md §5.4): over parsed predictions, ``accuracy = (TP + TN) / N``, ``precision = TP / (TP +
FP)``, ``recall = TP / (TP + FN)``, ``F1 = 2PR / (P + R)``, ``yes_ratio`` = fraction of *predictions* that are
"yes". Reported per split (random / popular / adversarial).

Pinned choices, where the harnesses disagree:

* **Parser: VLMEvalKit ``YOrN_Extraction``** — lowercase, VQA ``processPunctuation``, split on whitespace; "yes"
  if the token ``yes`` occurs and ``no`` does not, "no" for the reverse, else unknown (``None``). Chosen over
  LLaVA's rule (anything without a ``no``/``not`` token counts as "yes", so ``Not sure`` and unparseable text
  inflate the yes-ratio), lmms-eval's raw exact match (``Yes.`` is wrong) and Cambrian's first-token rule, because
  it never guesses: ambiguous or off-format answers are *counted* (``unknown_rate``) rather than silently turned
  into an answer. No LLM judge.
* An unknown prediction is wrong for accuracy and is "not yes" for precision/recall (VLMEvalKit's
  ``POPE_rating``): a ground-truth "yes" answered unknown is a miss in the recall denominator, a ground-truth
  "no" answered unknown is neither a TP nor an FP. Counts: ``tp + fp + tn + fn + unknown = N`` where ``fn`` counts
  only explicit "no" answers and ``recall = tp / (tp + fn + unknown_pos)`` = TP / all positives.
* ``yes_ratio`` counts predictions (LLaVA's definition); lmms-eval's ``pope_aggregate_yes_ratio`` counts the
  ground-truth labels (always about 0.5), a bug we do not reproduce.
* Undefined rates (no "yes" predicted, no positives) report 0.0; F1 is 0.0 when P + R = 0.
* Splits come from ``meta["category"]`` (lmms-eval's POPE field name): every rate is also reported as
  ``"<rate>/<split>"``, plus ``f1_category_mean``, the mean F1 over splits (a user reports the LLaVA-1.5 paper
  number matches this, LLaVA issue #626). The primary number is the pooled ``f1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    name = "pope"
    primary = "f1"

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        label = yes_no_label(require_references(item, self.name)[0], self.name, item.id)
        parsed = parse_yes_no(prediction)
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
