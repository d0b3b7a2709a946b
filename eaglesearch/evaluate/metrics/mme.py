"""MME: 14 yes/no subtasks, two questions per image; acc + acc+ per subtask, summed into perception and cognition.

Rule (reference/metrics.md §5.5): per subtask, ``acc`` = % of questions correct and ``acc+`` = % of images with
both questions correct; subtask score = acc + acc+ (max 200). Perception = sum over the 10 perception subtasks
(max 2000), cognition = sum over the 4 cognition subtasks (max 800).

Pinned choices, where the harnesses disagree:

* **Parser: MME's own rule** (official ``eval_tool/calculation.py``, as extended in lmms-eval ``parse_pred_ans``):
  lowercase, strip, delete every ``.``; exactly ``yes``/``no``; a single ``y``/``n``; else ``yes`` if it occurs in the
  first 4 characters, then ``no``; else unparsed (``None``, wrong). So ``Not sure`` and ``Nope`` read as "no".
  This is the rule MME numbers in papers (and Eagle's vendored lmms-eval) are computed with, so it is kept for
  comparability even though POPE uses the stricter token rule (see ``pope.py``).
* Subtask and image come from ``meta["category"]`` and ``meta["image"]``; the two questions of an image are found
  by image within its subtask (VLMEvalKit groups by image path; lmms-eval by a shared ``question_id``; Cambrian
  by line parity, which breaks on reordering). Subtask names are lmms-eval's (matched case-insensitively).
* acc is the question-level mean and acc+ the image-level fraction (identical to lmms-eval's per-image average
  when every image has its 2 questions). Subsets and bootstrap resamples follow the shared group rules in
  ``base.py`` (resampling unit: the image).
* Perception/cognition sum the subtasks *present*; ``total`` = perception + cognition. Primary: ``perception``
  (the MME number Eagle and most papers report).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

from eaglesearch.evaluate.items import BenchmarkItem, ScoredItem
from eaglesearch.evaluate.metrics.base import (
    Metric,
    group_all_correct,
    item_value,
    mean,
    require_items,
    require_meta,
    require_references,
)
from eaglesearch.evaluate.metrics.pope import yes_no_label

PERCEPTION_SUBTASKS: tuple[str, ...] = (
    "existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR",
)
COGNITION_SUBTASKS: tuple[str, ...] = (
    "commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning",
)
_CANONICAL = {name.lower(): name for name in PERCEPTION_SUBTASKS + COGNITION_SUBTASKS}


def parse_mme_answer(text: str) -> Literal["yes", "no"] | None:
    """MME's yes/no parser (official calculation tool / lmms-eval ``parse_pred_ans``); ``None`` = "other"."""
    answer = text.lower().strip().replace(".", "")
    if answer in ("yes", "y"):
        return "yes"
    if answer in ("no", "n"):
        return "no"
    if len(answer) == 1:
        return None
    prefix = answer[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return None


def mme_subtask(category: str) -> str:
    """The canonical subtask name for ``category`` (case-insensitive); errors list the 14 names."""
    try:
        return _CANONICAL[category.lower()]
    except KeyError:
        raise ValueError(f"MME subtask {category!r} is not one of {', '.join(_CANONICAL.values())}") from None


class MME(Metric):
    name = "mme"
    primary = "perception"

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        mme_subtask(require_meta(item, "category", self.name))
        require_meta(item, "image", self.name)
        label = yes_no_label(require_references(item, self.name)[0], self.name, item.id)
        return {"score": float(parse_mme_answer(prediction) == label)}

    def unit(self, item: BenchmarkItem) -> str:
        return f"{mme_subtask(require_meta(item, 'category', self.name))}/{require_meta(item, 'image', self.name)}"

    def aggregate(self, scored: Sequence[ScoredItem]) -> dict[str, float]:
        require_items(scored, self.name)
        by_subtask: dict[str, list[ScoredItem]] = defaultdict(list)
        for s in scored:
            by_subtask[mme_subtask(require_meta(s.item, "category", self.name))].append(s)
        out: dict[str, float] = {}
        totals = {"perception": 0.0, "cognition": 0.0}
        for subtask in PERCEPTION_SUBTASKS + COGNITION_SUBTASKS:
            members = by_subtask.get(subtask)
            if not members:
                continue
            acc = 100.0 * mean(item_value(s, "score", self.name) for s in members)
            acc_plus = 100.0 * group_all_correct(members, lambda s: self.unit(s.item), self.name)
            out[f"acc/{subtask}"] = acc
            out[f"acc_plus/{subtask}"] = acc_plus
            out[f"score/{subtask}"] = acc + acc_plus
            totals["perception" if subtask in PERCEPTION_SUBTASKS else "cognition"] += acc + acc_plus
        out.update(totals)
        out["total"] = totals["perception"] + totals["cognition"]
        return out
