"""Search strategies behind one ask/tell interface: pure Python, no I/O; imports only ``eaglesearch.spec``."""

from eaglesearch.search.base import Proposal, RoundDecision, Strategy
from eaglesearch.search.factory import make_strategy
from eaglesearch.search.greedy import GreedyStrategy
from eaglesearch.search.grid import GridStrategy

__all__ = ["GreedyStrategy", "GridStrategy", "Proposal", "RoundDecision", "Strategy", "make_strategy"]
