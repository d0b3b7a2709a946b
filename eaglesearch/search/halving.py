"""Successive halving inside a greedy round (``strategy.halving``): the rung ladder of one round's candidates.

A *rung* is a trial with ``budget`` < 1: its final stage stops at that fraction of its steps, on the full stage's
LR schedule, and keeps its checkpoint there (``eaglesearch/train/stages.py``). The ladder of a round with ``n``
candidates:

* rung 0: every candidate at ``min_fraction``;
* rung i+1: the best ``max(1, n_i // eta)`` of rung i's ``n_i`` (failed or unscored rungs never continue), at
  ``eta`` times the budget, resumed from their rung-i checkpoints by the execution layer (same scratch folder);
* once one candidate is left, or the next budget reaches 1, the survivors run the full trial (``budget`` None:
  the very key a search without halving trains, so either search reuses the other's full trials).

The round is decided on the full-budget results only; rung results are recorded (and listed in the round's
decision) but never win. Whether a rung can be trusted to pick the survivors is measured, not assumed: each round
records, per rung, Spearman's rank correlation between the rung's scores and the full-budget scores of the
candidates that have both (:meth:`Ladder.correlations`; by construction only the survivors, so few). Everything here is pure: the strategy asks for ``(candidate, budget)`` as a trial spec
with ``budget`` set, and the worker reads the budget from the spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from eaglesearch.search.base import Proposal, RungCorrelation, score_of
from eaglesearch.spec import HalvingSpec, TrialResult

RUNG = "rung"
"""Proposal role of a rung trial (a candidate below the full budget)."""


def rung_label(label: str, budget: float) -> str:
    """``clip+sam @25%``: the candidate's label with the rung's budget."""
    return f"{label} @{budget:.0%}"


def at_budget(p: Proposal, budget: float | None) -> Proposal:
    """The proposal ``p`` (a full-budget candidate) at ``budget`` (None or 1: ``p`` itself)."""
    if budget is None or budget >= 1:
        return p
    trial = p.trial.model_copy(update={"budget": budget})
    return Proposal(trial=trial, round=p.round, label=rung_label(p.label, budget), role=RUNG, added=p.added)


def keep_count(entering: int, eta: int) -> int:
    """How many of ``entering`` candidates continue past a rung: the best 1/eta, at least one."""
    return max(1, entering // eta)


def best(rung: list[Proposal], results: Callable[[str], TrialResult | None], metric: str, mode: str,
         keep: int) -> list[Proposal]:
    """The ``keep`` best of a rung's proposals by ``metric`` (ties: earlier in pool order), unscored ones never."""
    scored = [(score_of(results(p.key), metric), i, p) for i, p in enumerate(rung)]
    usable = [(v, i, p) for v, i, p in scored if v is not None]
    usable.sort(key=lambda t: (-t[0] if mode == "max" else t[0], t[1]))
    return [p for _, _, p in usable[:keep]]


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ascending; tied values share the mean of the ranks they span (``[3, 1, 3]`` → ``[2.5, 1, 2.5]``)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


MIN_CORRELATED = 3
"""Fewest pairs a rank correlation is reported for: with two, rho is always ±1 and says nothing."""


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rho: the Pearson correlation of the average ranks (ties handled as scipy's ``spearmanr``).
    ``None`` with fewer than :data:`MIN_CORRELATED` pairs or when either side is constant (undefined)."""
    if len(xs) != len(ys):
        raise ValueError(f"spearman needs paired values; got {len(xs)} and {len(ys)}")
    if len(xs) < MIN_CORRELATED:
        return None
    rx, ry = average_ranks(xs), average_ranks(ys)
    mx, my = math.fsum(rx) / len(rx), math.fsum(ry) / len(ry)
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx, syy = math.fsum((a - mx) ** 2 for a in rx), math.fsum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


class Ladder:
    """The rungs of one round: which candidates run at which budget, and who continues.

    ``candidates`` are the round's full-budget proposals in pool order. :meth:`next_rung` is called when every
    proposal of the current rung is answered; it returns the proposals of the next rung (the full-budget ones last)
    or an empty list once the full rung is done (or no candidate survived).
    """

    def __init__(self, spec: HalvingSpec, candidates: list[Proposal]) -> None:
        self.spec, self.candidates = spec, list(candidates)
        self.budgets = spec.fractions()
        self.level = 0
        self.done = False
        single = len(candidates) <= 1
        self.current: list[Proposal] = [at_budget(p, None if single else self.budgets[0]) for p in candidates]
        self.full = single  # a lone candidate skips straight to the full budget: no rung would decide anything
        self.rungs: list[tuple[float, list[Proposal]]] = [] if single else [(self.budgets[0], list(self.current))]

    def next_rung(self, results: Callable[[str], TrialResult | None], metric: str, mode: str) -> list[Proposal]:
        if self.full:
            self.done = True
            return []
        keep = keep_count(len(self.current), self.spec.eta)
        winners = best(self.current, results, metric, mode, keep)
        chosen = {w.key for w in winners}
        at_rung = self.budgets[self.level]
        survivors = [p for p in self.candidates if at_budget(p, at_rung).key in chosen]  # in pool order
        if not survivors:
            self.done = True
            return []
        self.level += 1
        budget = self.budgets[self.level]
        if budget >= 1 or len(survivors) == 1:
            self.full = True
            budget = 1.0
        self.current = [at_budget(p, budget) for p in survivors]
        if not self.full:
            self.rungs.append((budget, list(self.current)))
        return list(self.current)

    def entered(self, results: Callable[[str], TrialResult | None], metric: str) -> int:
        """Candidates with a usable score on the first rung (the full budget for a lone candidate): the family a
        round's multiplicity correction must count (``search/adoption.py``)."""
        first = self.rungs[0][1] if self.rungs else [at_budget(p, None) for p in self.candidates]
        return sum(score_of(results(p.key), metric) is not None for p in first)

    def correlations(self, results: Callable[[str], TrialResult | None], metric: str) -> tuple[RungCorrelation, ...]:
        """Per rung below the full budget: Spearman's rho between its scores and the full-budget scores of the
        candidates scored at both (a rank correlation, so the same in ``min`` and ``max`` mode)."""
        out = []
        for budget, rung in self.rungs:
            full_key = {at_budget(q, budget).key: q.key for q in self.candidates}
            pairs = []
            for p in rung:
                low, high = score_of(results(p.key), metric), score_of(results(full_key[p.key]), metric)
                if low is not None and high is not None:
                    pairs.append((low, high))
            out.append(RungCorrelation(budget=budget, rho=spearman([a for a, _ in pairs], [b for _, b in pairs]),
                                       n=len(pairs)))
        return tuple(out)
