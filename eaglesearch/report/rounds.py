"""What a greedy search's parent run says about its rounds, as report lines: the adoption rule and, with
successive halving, how each rung ranked the candidates against the full budget (Spearman's rho)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from eaglesearch.tracking.records import TAG_RULE, TAG_RUNGS


def rule_line(tags: Mapping[str, str]) -> str | None:
    """``adoption rule: paired_ci (Holm, alpha 0.05); ...`` when the record names the rule."""
    rule = tags.get(TAG_RULE)
    if not rule:
        return None
    if rule.startswith("paired_ci"):
        how = ("a candidate is adopted only when the paired bootstrap interval of its gain over the incumbent "
               "(same evaluation items) lies above 0 at the level shown (one below 0 marks it significantly worse); "
               "with Holm the levels are the step-down's, by p-value; the largest such gain is adopted")
    elif rule.startswith("min_gain"):
        how = "the round's best is adopted when its point gain exceeds min_gain; intervals are shown, uncorrected"
    else:
        how = "every round adopts its best; intervals are shown, uncorrected"
    return f"adoption rule: {rule}: {how}"


def rung_lines(tags: Mapping[str, str]) -> dict[int, str]:
    """Round → ``halving: Spearman rho between rung and full-budget scores: @25% 0.50 (n=3); @75% – (n=1)``.
    A rho shown as – is undefined (fewer than 3 candidates scored at both budgets, or constant scores)."""
    raw = tags.get(TAG_RUNGS)
    if not raw:
        return {}
    out = {}
    for rnd, rungs in json.loads(raw).items():
        parts = [f"@{budget:.0%} {'–' if rho is None else f'{rho:+.2f}'} (n={n})" for budget, rho, n in rungs]
        out[int(rnd)] = "halving: Spearman rho between rung and full-budget scores: " + "; ".join(parts)
    return out
