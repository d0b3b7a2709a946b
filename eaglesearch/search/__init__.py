"""Search strategies behind one ask/tell interface: pure Python, no I/O; imports only ``eaglesearch.spec``."""

from eaglesearch.search.adoption import ComparisonUnavailable, GainComparator, PairedGain
from eaglesearch.search.base import CandidateVerdict, Proposal, RoundDecision, RungCorrelation, Strategy
from eaglesearch.search.factory import make_strategy
from eaglesearch.search.greedy import GreedyStrategy
from eaglesearch.search.grid import GridStrategy

__all__ = ["CandidateVerdict", "ComparisonUnavailable", "GainComparator", "GreedyStrategy", "GridStrategy",
           "PairedGain", "Proposal", "RoundDecision", "RungCorrelation", "Strategy", "make_strategy"]
