"""A search's state rebuilt from its record: a fresh strategy told the recorded result of every trial it asks for,
until it asks for one the record lacks (the search is unfinished) or finishes (it is complete)."""

from __future__ import annotations

from collections.abc import Mapping

from eaglesearch.search.base import Strategy
from eaglesearch.spec import TrialResult


def replay(strategy: Strategy, recorded: Mapping[str, TrialResult]) -> bool:
    """Drive a fresh strategy with recorded results only (``TrackingStore.trial_results``: the parent's children,
    read once). True when the search is complete in the record."""
    while not strategy.finished:
        proposal = strategy.ask()
        if proposal is None:
            return strategy.finished
        result = recorded.get(proposal.trial.key)
        if result is None:
            return False
        strategy.tell(proposal.trial.key, result)
    return True
