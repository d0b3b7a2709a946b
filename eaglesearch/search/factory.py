"""Build the strategy a search space declares."""

from __future__ import annotations

from eaglesearch.search.adoption import GainComparator
from eaglesearch.search.base import Strategy
from eaglesearch.search.greedy import GreedyStrategy
from eaglesearch.search.grid import GridStrategy
from eaglesearch.spec import LoadedSearch

STRATEGIES: dict[str, type[GreedyStrategy | GridStrategy]] = {"greedy": GreedyStrategy, "grid": GridStrategy}
OPTUNA = "optuna"  # imported on demand: Optuna takes a while to import and most searches don't need it


def make_strategy(loaded: LoadedSearch, comparator: GainComparator | None = None) -> Strategy:
    """A fresh strategy for ``loaded`` (dispatch on ``space.strategy.kind``), building trials with its factory.
    ``comparator`` pairs two trials' evaluation items for a greedy round's gain intervals (``adopt``); without one
    a greedy round shows no intervals, and ``adopt.rule: paired_ci`` cannot decide a round."""
    spec = loaded.space.strategy
    if spec.kind == OPTUNA:
        from eaglesearch.search.optuna_strategy import OptunaStrategy

        # Default batch: one proposal per worker, so every worker is busy and proposals don't depend on timing.
        return OptunaStrategy(spec, loaded.factory,  # type: ignore[arg-type]
                              concurrency=loaded.space.resources.max_concurrent_trials)
    cls = STRATEGIES.get(spec.kind)
    if cls is None:
        kinds = ", ".join([*STRATEGIES, OPTUNA])
        raise ValueError(f"strategy kind '{spec.kind}' has no implementation; use one of: {kinds}")
    if cls is GreedyStrategy:
        return GreedyStrategy(spec, loaded.factory, comparator)  # type: ignore[arg-type]
    return cls(spec, loaded.factory)  # type: ignore[arg-type]
