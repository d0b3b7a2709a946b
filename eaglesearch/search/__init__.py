"""Search strategies behind one ask/tell interface: pure Python, no I/O; imports only ``eaglesearch.spec``."""

from eaglesearch.search.base import Candidate, Proposal, RoundDecision, Strategy
from eaglesearch.search.greedy import GreedyStrategy
from eaglesearch.search.grid import GridStrategy
from eaglesearch.search.registry import make_strategy, planned_trials, reachable_trials, strategy_class

__all__ = [
    "Candidate", "GreedyStrategy", "GridStrategy", "Proposal", "RoundDecision", "Strategy", "make_strategy",
    "planned_trials", "reachable_trials", "strategy_class",
]
