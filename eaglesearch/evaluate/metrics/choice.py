"""Multiple-choice accuracy (SEED-Bench, ScienceQA-IMG, AI2D): read an option letter from free text, compare.

Letter extraction is where harnesses disagree most (reference/metrics.md §5.9 table): lmms-eval SEED takes the
first character (``"The answer is D."`` → ``T``), lmms-eval AI2D only reads ``^\\s*X\\.``, Cambrian lowercases and
takes the first character (``"dog"`` → ``d``), LLaVA needs the bare letter.

Pinned: **VLMEvalKit ``can_infer`` without an LLM judge** (the "VLMEvalKit can_infer" column of §5.9, and the
extractor of MMBench §5.8), because it is the only rule that reads every answer format in the table correctly:

1. A refusal phrase (VLMEvalKit's list) → no answer.
2. Option letter: replace ``.()[],:;!*#{}`` with spaces, split on whitespace. If exactly one of the option letters
   occurs as a token (case-sensitive: ``b`` is not ``B``) and its first occurrence is among the last 4 tokens →
   that letter. A known quirk is kept: ``"A dog is shown"`` reads the article as option A. If no option letter
   occurs but the token ``Z`` (VLMEvalKit's "none of these") does → no answer, without trying steps 3–4.
3. ``answer is X`` fallback (newer VLMEvalKit): ``(correct) answer is **X**`` with ``X`` an upper-case option
   letter. Pinned tighter than VLMEvalKit's case-insensitive ``[ABCD]``: the letter must be upper case and not
   start a word (so ``"the answer is a dog"`` is not option A), and any option letter counts, not only A–D.
4. Option text: if the answer (lowercased) is at most twice the total length of the option texts and exactly one
   option text (lowercased) is a substring of it → that option's letter.
5. Otherwise no answer (``None``): scored wrong. No judge, no random letter (VLMEvalKit/lmms-eval's random
   fallback would make scores non-deterministic).

The reference (``item.references[0]``) must be the correct option's letter; loaders map index answers
(ScienceQA, AI2D) to letters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.metrics.base import MeanMetric, require_references

REFUSALS: tuple[str, ...] = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})
_ANSWER_IS = re.compile(r"(?i:(?:correct\s+)?answer\s+is)\s+\**([A-Z])\**(?![A-Za-z])")
_LAST_TOKENS = 4
_NONE_LETTER = "Z"  # VLMEvalKit's "none of the options" letter


def _answer_is(text: str, letters: Sequence[str]) -> str | None:
    match = _ANSWER_IS.search(text)
    return match.group(1) if match and match.group(1) in letters else None


def _option_text(text: str, letters: Sequence[str], choices: Sequence[str]) -> str | None:
    answer = text.lower()
    if len(answer) > 2 * sum(len(c) for c in choices):
        return None
    hits = [letter for letter, choice in zip(letters, choices, strict=True) if choice.lower() in answer]
    return hits[0] if len(hits) == 1 else None


def extract_choice(text: str, letters: Sequence[str], choices: Sequence[str]) -> str | None:
    """The option letter ``text`` answers with, or ``None`` (VLMEvalKit ``can_infer``, no judge)."""
    if len(letters) != len(choices):
        raise ValueError(f"{len(letters)} letters for {len(choices)} choices")
    if any(refusal in text for refusal in REFUSALS):
        return None
    tokens = text.translate(_SEPARATORS).split()
    present = [letter for letter in letters if letter in tokens]
    if len(present) == 1 and tokens.index(present[0]) >= len(tokens) - _LAST_TOKENS:
        return present[0]
    if not present and _NONE_LETTER in tokens:
        return None
    return _answer_is(text, letters) or _option_text(text, letters, choices)


def answer_letter(item: BenchmarkItem, metric: str) -> str:
    """``item.references[0]`` checked to be one of the item's option letters."""
    if not item.choices:
        raise ValueError(f"metric {metric!r}: item {item.id!r} of {item.benchmark!r} has no choices")
    letter = require_references(item, metric)[0].strip()
    if letter not in item.letters:
        raise ValueError(f"metric {metric!r}: item {item.id!r} has reference {letter!r}; expected one of "
                         f"{', '.join(item.letters)} (the loader must give the correct option's letter)")
    return letter


def choice_accuracy(prediction: str, answer: str, letters: Sequence[str], choices: Sequence[str]) -> float:
    """1.0 if the letter extracted from ``prediction`` is ``answer``, else 0.0 (no letter is wrong)."""
    return float(extract_choice(prediction, letters, choices) == answer)


class ChoiceAccuracy(MeanMetric):
    name = "choice_accuracy"
    primary = "accuracy"

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        answer = answer_letter(item, self.name)
        return {"score": choice_accuracy(prediction, answer, item.letters, item.choices)}
