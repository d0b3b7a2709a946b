"""Search strategies behind one ask/tell interface: pure Python, no I/O; imports only ``eaglesearch.spec``."""

from eaglesearch.search.adoption import ComparisonUnavailable, GainComparator, PairedGain
from eaglesearch.search.base import Candidate, CandidateVerdict, Proposal, RoundDecision, RungCorrelation, Strategy
from eaglesearch.search.greedy import GreedyStrategy
from eaglesearch.search.grid import GridStrategy
from eaglesearch.search.registry import make_strategy, planned_trials, reachable_trials, strategy_class

__all__ = [
    "Candidate", "CandidateVerdict", "ComparisonUnavailable", "GainComparator", "GreedyStrategy", "GridStrategy",
    "PairedGain", "Proposal", "RoundDecision", "RungCorrelation", "Strategy", "make_strategy", "planned_trials",
    "reachable_trials", "strategy_class",
]
