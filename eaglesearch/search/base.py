"""The one ask/tell interface every search strategy implements, and the values it hands out.

A strategy is a pure state machine: ``ask()`` hands out the next :class:`Proposal` (or ``None`` when it must wait
for results or is done), ``tell(key, result)`` records what a proposed trial produced. It owns no I/O, no Ray and
no unseeded randomness, holds only picklable state (so the Ray Tune searcher that wraps it can be pickled), and
answers a trial whose key it has already been told from that result instead of proposing it again.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from eaglesearch.spec import (
    GreedyStrategySpec,
    GridStrategySpec,
    OptunaStrategySpec,
    TrialFactory,
    TrialResult,
    TrialSpec,
)


@dataclass(frozen=True)
class Proposal:
    """One trial a strategy wants run, with the context a runner and a report need."""

    trial: TrialSpec
    round: int  # greedy: 0 = base, r = r-th adding round; grid: 0
    label: str  # human name, e.g. "clip+convnext" or "clip lr=0.0005"
    role: str  # "base" | "candidate" | "grid"
    added: str | None = None  # greedy: the expert name this candidate adds; None otherwise
    key: str = field(init=False, repr=False, compare=False)  # trial.key, computed once (it hashes the spec)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", self.trial.key)


@dataclass(frozen=True)
class CandidateVerdict:
    """What a greedy round decided about one of its candidates (``search/adoption.py`` says how).

    ``gain`` is the candidate's improvement over the incumbent in the search's direction (positive = better);
    ``low``/``high`` its paired bootstrap interval at ``confidence`` (Holm-corrected under ``paired_ci`` with
    ``correction: holm``), ``None`` when no interval could be paired; ``p_value`` the two-sided bootstrap p-value.
    ``decision`` is one of the ``adoption`` module's decision names (adopted, not significant, below min_gain, ...).
    """

    label: str
    key: str
    decision: str
    added: str | None = None  # the expert the candidate adds
    gain: float | None = None
    low: float | None = None
    high: float | None = None
    confidence: float | None = None
    p_value: float | None = None


@dataclass(frozen=True)
class RungCorrelation:
    """Successive halving: how a rung ranked the candidates that also ran the full budget (Spearman's rho with
    average ranks for ties; ``None`` below 3 such candidates, where a rank correlation says nothing)."""

    budget: float
    rho: float | None
    n: int


@dataclass(frozen=True)
class RoundDecision:
    """What one completed greedy round evaluated and decided.

    ``candidates`` lists every trial of the round in proposal (pool) order as ``(label, key, objective, status)``.
    ``chosen_*`` and ``added`` name the candidate the incumbent became (``None`` when the incumbent was kept).
    ``objective`` is the round's best usable objective (``None`` when every trial failed), ``previous_objective``
    the incumbent's before the round, and ``gain`` the improvement of ``objective`` over it in the search's
    direction (positive = better, also in ``min`` mode). ``stopped`` is why the search ended here, else ``None``.
    ``rule`` is the adoption rule the round was decided by, in words (``adoption.describe``), ``verdicts`` one :class:`CandidateVerdict` per
    full-budget candidate (pool order) and ``rungs`` the halving ladder's rank correlations (empty without halving).
    """

    round: int
    candidates: tuple[tuple[str, str, float | None, str], ...]
    chosen_label: str | None
    chosen_key: str | None
    added: str | None
    objective: float | None
    previous_objective: float | None
    gain: float | None
    stopped: str | None = None
    rule: str | None = None
    verdicts: tuple[CandidateVerdict, ...] = ()
    rungs: tuple[RungCorrelation, ...] = ()


def score_of(result: TrialResult | None, metric: str) -> float | None:
    """The value a result is ranked by (``objective`` or any recorded metric such as ``acc/count``); ``None``
    when it may not win: missing, failed, stopped early (a partial result), or not a number."""
    if result is None or result.status in ("failed", "stopped"):
        return None
    value = result.objective if metric == "objective" else result.metrics.get(metric)
    if value is None or math.isnan(value):
        return None
    return float(value)


def improvement(new: float, old: float, mode: str) -> float:
    """How much ``new`` beats ``old`` in the search's direction (positive = better)."""
    return new - old if mode == "max" else old - new


def best_index(objectives: list[float | None], mode: str) -> int | None:
    """Index of the best objective (``None`` entries skipped); the earliest wins a tie. ``None`` if all are None."""
    best: int | None = None
    for i, value in enumerate(objectives):
        if value is None:
            continue
        if best is None or improvement(value, objectives[best], mode) > 0:  # type: ignore[arg-type]
            best = i
    return best


class Strategy(ABC):
    """Ask/tell search strategy. Subclasses set ``kind``; ``metric`` and ``mode`` say what the results are ranked by."""

    kind: str
    metric: str
    mode: str

    def __init__(self, spec: GreedyStrategySpec | GridStrategySpec | OptunaStrategySpec, factory: TrialFactory) -> None:
        self.spec = spec
        self.factory = factory
        self.metric = spec.objective
        self.mode = spec.mode

    @abstractmethod
    def ask(self) -> Proposal | None:
        """The next trial to run; ``None`` when waiting for results (a barrier) or finished."""

    @abstractmethod
    def tell(self, key: str, result: TrialResult) -> None:
        """Record a proposed trial's result. Unknown keys raise ``ValueError``; repeats of a told key are ignored."""

    @property
    @abstractmethod
    def finished(self) -> bool:
        """True once nothing more will be proposed."""

    @abstractmethod
    def pending(self) -> set[str]:
        """Keys handed out by ``ask`` and not yet told."""

    @abstractmethod
    def decisions(self) -> list[RoundDecision]:
        """One per completed round (greedy); empty for strategies without rounds."""

    @abstractmethod
    def incumbent(self) -> Proposal | None:
        """The best trial so far (greedy: the trial of the currently chosen expert set)."""

    @abstractmethod
    def expected_trials(self) -> list[int]:
        """Trials per round if nothing fails and nothing stops early (what ``plan`` shows)."""

    @abstractmethod
    def baseline_key(self) -> str | None:
        """Key of the trial deltas refer to (greedy: the base; grid: ``spec.baseline``'s combination)."""

    @abstractmethod
    def result(self, key: str) -> TrialResult | None:
        """The result told for ``key``, if any."""
