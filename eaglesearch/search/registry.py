"""Which strategy class runs each ``strategy.kind``, and what a loaded search asks of it.

Each kind is one entry of :data:`STRATEGIES`: ``kind → "module:Class"``, imported on first use (Optuna takes a while
to import and most searches don't need it). Everything a kind does lives on its class (``search/<kind>.py``): the
search itself, what it reports, and what it can reach before it runs. A kind without an entry is an error naming
the registered kinds; nothing falls back to another strategy. The spec side of a kind (its fields, the trials
it declares) is its ``*StrategySpec`` in the ``strategy`` union of ``spec/search_space.py``.
"""

from __future__ import annotations

import importlib

from eaglesearch.search.adoption import GainComparator
from eaglesearch.search.base import Candidate, Strategy
from eaglesearch.spec import LoadedSearch, TrialSpec

STRATEGIES: dict[str, str] = {
    "greedy": "eaglesearch.search.greedy:GreedyStrategy",
    "grid": "eaglesearch.search.grid:GridStrategy",
    "optuna": "eaglesearch.search.optuna_strategy:OptunaStrategy",
}


def strategy_class(kind: str) -> type[Strategy]:
    """The class registered for ``kind``; ``ValueError`` naming the registered kinds otherwise."""
    target = STRATEGIES.get(kind)
    if target is None:
        raise ValueError(f"strategy kind '{kind}' has no implementation; use one of: {', '.join(STRATEGIES)}")
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Strategy) and cls.kind == kind):
        raise TypeError(f"STRATEGIES['{kind}'] = '{target}' is not a Strategy subclass with kind '{kind}'")
    return cls


def make_strategy(loaded: LoadedSearch, comparator: GainComparator | None = None) -> Strategy:
    """A fresh strategy for ``loaded`` (its ``space.strategy.kind``), building trials with its factory.
    ``comparator`` pairs two trials' evaluation items for a greedy round's gain intervals (``adopt``); without one
    a greedy round shows no intervals, and ``adopt.rule: paired_ci`` cannot decide a round."""
    return strategy_class(loaded.space.strategy.kind).from_search(loaded, comparator)


def planned_trials(loaded: LoadedSearch) -> list[TrialSpec]:
    """The trials whose cost ``plan`` reports (the strategy's ``planned_trials``)."""
    return strategy_class(loaded.space.strategy.kind).planned_trials(loaded)


def reachable_trials(loaded: LoadedSearch) -> list[Candidate]:
    """Every trial the strategy can reach, with the entry each comes from (the strategy's ``reachable``): what the
    preflight checks. ``SpecError`` at the strategy entry of a trial that cannot be built."""
    return list(strategy_class(loaded.space.strategy.kind).reachable(loaded))
