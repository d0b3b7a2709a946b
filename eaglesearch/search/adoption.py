"""Which candidate a greedy round adopts (``strategy.adopt``), and a verdict for every candidate of the round.

Rules (``GreedyStrategySpec.adoption_rule``):

* ``best``: the round's best usable candidate is adopted (no ``adopt``, no ``stop_when_no_gain``; Eagle's protocol).
* ``min_gain``: the best is adopted when its point gain over the incumbent exceeds ``strategy.min_gain``.
* ``paired_ci``: a candidate qualifies only when its paired interval of the gain excludes 0, and the qualifying
  candidate with the largest point gain is adopted. The intervals come from a :class:`GainComparator` the
  execution layer injects (a paired bootstrap over the same evaluation items, read from the trials' persisted
  predictions); this module stays pure.

Holm (``correction: holm``), carried out on per-candidate confidence levels. The family is the round's usable
candidates (m of them: finished, with a score), including any whose interval cannot be paired (they count, and are
never significant: the conservative choice). With successive halving the family is every candidate that entered the
ladder with a usable first-rung score, not only the survivors that reached the full budget: the survivors were
selected on the same evaluation items, so correcting over them alone would understate the search's chances; the
eliminated ones take the last places of the ordering (as if their p-values were 1). Candidates are ordered by their two-sided bootstrap p-value
(``evaluate/uncertainty.py``; ties and unpaired ones last, in pool order); the j-th of them (j = 1..m) gets its
interval at level ``1 - alpha / (m - j + 1)``, and candidates 1..j are significant while every interval up to the
j-th excludes 0 (step-down: the first interval that contains 0 stops the procedure). This is Holm's procedure with
the percentile interval standing for the test: a percentile interval at level 1 - a excludes 0 exactly when at
most a fraction a/2 of the replicate gains lie on the other side of 0, which is the p-value ≤ a of the module above
up to the quantile interpolation of the interval's ends; the decision is the interval's, so what a report shows
and what was decided never disagree. ``correction: none`` puts every interval at ``1 - alpha``.

Under ``best`` and ``min_gain`` the intervals are shown (uncorrected, at 1 - alpha) but decide nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from eaglesearch.search.base import CandidateVerdict, best_index
from eaglesearch.spec import TrialResult

ADOPTED = "adopted"
NOT_BEST = "not best"  # qualified, but another candidate gained more
NOT_SIGNIFICANT = "not significant"  # paired_ci: the (corrected) interval contains 0
WORSE = "significantly worse"  # paired_ci: the (corrected) interval lies below 0
BELOW_MIN_GAIN = "below min_gain"  # min_gain: the point gain does not exceed strategy.min_gain
FAILED = "failed"  # no usable result (failed, stopped early, or no score)
UNPAIRED = "no paired interval"  # paired_ci: the comparator could not pair the two trials' items

RULES = ("best", "min_gain", "paired_ci")


@dataclass(frozen=True)
class PairedGain:
    """``delta`` = metric(candidate) - metric(incumbent) in the metric's units (not oriented by mode), its paired
    percentile interval at the confidence asked for, and the two-sided bootstrap p-value (the same at any level)."""

    delta: float
    low: float
    high: float
    p_value: float


class ComparisonUnavailable(Exception):
    """The two trials cannot be paired (no persisted predictions, different items); the message says why."""


class GainComparator(Protocol):
    """Pairs two finished trials item by item. Implemented by the execution layer from the record; must be
    picklable (the Ray Tune searcher snapshots the strategy that holds it) and deterministic (a replay of the
    record must decide every round as the live search did)."""

    def compare(self, candidate: TrialResult, incumbent: TrialResult, metric: str, confidence: float) -> PairedGain:
        """Paired bootstrap of ``metric`` (``objective`` or ``score/<benchmark>``), candidate minus incumbent, at
        ``confidence``; raises :class:`ComparisonUnavailable` when the trials cannot be paired."""
        ...


@dataclass(frozen=True)
class Contender:
    """One full-budget candidate of a round as the rule sees it. ``gain`` is ``None`` when it has no usable result;
    ``pairable`` is false when its value is not one trial's (a mean over extra seeds), so no interval applies."""

    label: str
    key: str
    gain: float | None
    result: TrialResult
    pairable: bool = True
    added: str | None = None


@dataclass(frozen=True)
class Judgement:
    verdicts: tuple[CandidateVerdict, ...]
    adopted: int | None  # index into the contenders


@dataclass(frozen=True)
class RuleSettings:
    rule: str
    min_gain: float = 0.0
    alpha: float = 0.05
    correction: str = "holm"
    metric: str = "objective"
    mode: str = "max"


def describe(settings: RuleSettings) -> str:
    """The rule in a few words, as reports print it: ``paired_ci (Holm, alpha 0.05)``, ``min_gain 0.05``, ``best``."""
    if settings.rule == "paired_ci":
        correction = "Holm" if settings.correction == "holm" else "no correction"
        return f"paired_ci ({correction}, alpha {settings.alpha:g})"
    if settings.rule == "min_gain":
        return f"min_gain {settings.min_gain:g}"
    return settings.rule


def judge(contenders: Sequence[Contender], incumbent: TrialResult | None, settings: RuleSettings,
          comparator: GainComparator | None, family: int = 0) -> Judgement:
    """Every contender's verdict and the one adopted (module docstring). ``comparator`` may be ``None`` except
    under ``paired_ci``; then no intervals are shown. ``family``: Holm's m when larger than the usable contenders
    (candidates a halving ladder eliminated before the full budget)."""
    if settings.rule not in RULES:
        raise ValueError(f"unknown adoption rule {settings.rule!r}; known: {', '.join(RULES)}")
    if settings.rule == "paired_ci":
        if comparator is None or incumbent is None:
            raise RuntimeError("adopt.rule paired_ci needs a gain comparator and an incumbent; the strategy was "
                               "built without a comparator (make_strategy(..., comparator=...))")
        return _paired(contenders, incumbent, settings, comparator, family)
    level = 1 - settings.alpha
    pairs = [_pair(comparator, c, incumbent, settings.metric, level) for c in contenders]
    best = best_index([c.gain for c in contenders], "max")  # gains are oriented: larger is better
    adopted = best
    if settings.rule == "min_gain" and best is not None and not contenders[best].gain > settings.min_gain:  # type: ignore[operator]
        adopted = None
    verdicts = []
    for i, c in enumerate(contenders):
        if c.gain is None:
            decision = FAILED
        elif i == adopted:
            decision = ADOPTED
        elif settings.rule == "min_gain" and not c.gain > settings.min_gain:
            decision = BELOW_MIN_GAIN
        else:
            decision = NOT_BEST
        verdicts.append(_verdict(c, decision, pairs[i], level, settings.mode))
    return Judgement(tuple(verdicts), adopted)


def holm_levels(m: int, alpha: float, correction: str) -> list[float]:
    """Confidence level of the j-th smallest p-value's interval, j = 1..m: ``1 - alpha / (m - j + 1)`` (Holm) or
    ``1 - alpha`` (none)."""
    if correction == "none":
        return [1 - alpha] * m
    if correction != "holm":
        raise ValueError(f"unknown correction {correction!r}; use holm or none")
    return [1 - alpha / (m - j) for j in range(m)]


def _paired(contenders: Sequence[Contender], incumbent: TrialResult, settings: RuleSettings,
            comparator: GainComparator, family: int) -> Judgement:
    usable = [i for i, c in enumerate(contenders) if c.gain is not None]
    first_level = 1 - settings.alpha
    first = {i: _pair(comparator, contenders[i], incumbent, settings.metric, first_level) for i in usable}
    order = sorted(usable, key=lambda i: (0, first[i].p_value, i) if first[i] is not None else (1, 0.0, i))  # type: ignore[union-attr]
    levels = holm_levels(max(len(order), family), settings.alpha, settings.correction)[:len(order)]
    intervals: dict[int, tuple[PairedGain | None, float]] = {}
    significant: list[int] = []
    stepping = True
    for i, level in zip(order, levels, strict=True):
        pair = first[i]
        if pair is not None and not math.isclose(level, first_level):
            pair = _pair(comparator, contenders[i], incumbent, settings.metric, level)
        intervals[i] = (pair, level)
        stepping = stepping and pair is not None and (pair.low > 0 or pair.high < 0)
        if stepping:
            significant.append(i)
    better = [i for i in significant if _oriented(intervals[i][0], settings.mode)[0] > 0]  # type: ignore[arg-type]
    adopted = max(better, key=lambda i: (contenders[i].gain, -i)) if better else None
    verdicts = []
    for i, c in enumerate(contenders):
        if c.gain is None:
            verdicts.append(_verdict(c, FAILED, None, None, settings.mode))
            continue
        pair, level = intervals[i]
        if pair is None:
            decision = UNPAIRED
        elif i == adopted:
            decision = ADOPTED
        elif i in better:
            decision = NOT_BEST
        elif i in significant:
            decision = WORSE
        else:
            decision = NOT_SIGNIFICANT
        verdicts.append(_verdict(c, decision, pair, level, settings.mode))
    return Judgement(tuple(verdicts), adopted)


def _pair(comparator: GainComparator | None, c: Contender, incumbent: TrialResult | None, metric: str,
          level: float) -> PairedGain | None:
    if comparator is None or incumbent is None or c.gain is None or not c.pairable:
        return None
    try:
        return comparator.compare(c.result, incumbent, metric, level)
    except ComparisonUnavailable:
        return None


def _oriented(pair: PairedGain, mode: str) -> tuple[float, float]:
    """The interval of the gain in the search's direction (``min`` mode: a lower metric is a gain)."""
    return (pair.low, pair.high) if mode == "max" else (-pair.high, -pair.low)


def _verdict(c: Contender, decision: str, pair: PairedGain | None, level: float | None, mode: str) -> CandidateVerdict:
    if pair is None:
        return CandidateVerdict(label=c.label, key=c.key, decision=decision, added=c.added, gain=c.gain)
    low, high = _oriented(pair, mode)
    return CandidateVerdict(label=c.label, key=c.key, decision=decision, added=c.added, gain=c.gain, low=low,
                            high=high, confidence=level, p_value=pair.p_value)
