"""Build the strategy a search space declares."""

from __future__ import annotations

from eaglesearch.search.base import Strategy
from eaglesearch.search.greedy import GreedyStrategy
from eaglesearch.search.grid import GridStrategy
from eaglesearch.spec import LoadedSearch

STRATEGIES: dict[str, type[GreedyStrategy | GridStrategy]] = {"greedy": GreedyStrategy, "grid": GridStrategy}


def make_strategy(loaded: LoadedSearch) -> Strategy:
    """A fresh strategy for ``loaded`` (dispatch on ``space.strategy.kind``), building trials with its factory."""
    spec = loaded.space.strategy
    cls = STRATEGIES.get(spec.kind)
    if cls is None:
        raise ValueError(f"strategy kind '{spec.kind}' has no implementation; use one of: {', '.join(STRATEGIES)}")
    return cls(spec, loaded.factory)  # type: ignore[arg-type]
