"""The one ask/tell interface every search strategy implements, and the values it hands out.

A strategy is a pure state machine: ``ask()`` hands out the next :class:`Proposal` (or ``None`` when it must wait
for results or is done), ``tell(key, result)`` records what a proposed trial produced. It owns no I/O, no Ray and
no unseeded randomness, holds only picklable state (so the Ray Tune searcher that wraps it can be pickled), and
answers a trial whose key it has already been told from that result instead of proposing it again.

Everything about one kind of strategy lives on its class: the search (``ask``/``tell``), what it reports
(:class:`Reporting`, with defaults) and what it can reach before it runs (``planned_trials`` for ``plan``,
``reachable`` for the preflight). :mod:`eaglesearch.search.registry` maps each ``strategy.kind`` to its class.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Self

from eaglesearch.spec import LoadedSearch, SpecError, TrialFactory, TrialResult, TrialSpec
from eaglesearch.spec.declared import DeclaredTrial
from eaglesearch.spec.search_space import StrategySpec
from eaglesearch.spec.yaml_source import Loc, format_loc

if TYPE_CHECKING:  # adoption imports this module
    from eaglesearch.search.adoption import GainComparator


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


class Reporting:
    """What a run, its progress view and its report read off a strategy, with the answers of a strategy that has no
    rounds, no baseline and one objective. Strategies override what they know better (greedy: its rounds, its
    adopted incumbent, its base; Optuna: its Pareto front).

    The defaults read the record :class:`Strategy` keeps for every strategy: ``_results`` (every told result, by
    key), ``_pending`` (keys handed out by ``ask`` and not yet told) and ``_proposed`` (every proposal made so far,
    by key, in proposal order; a strategy adds to it with ``_record``)."""

    metric: str
    mode: str
    _results: dict[str, TrialResult]
    _pending: set[str]
    _proposed: dict[str, Proposal]

    def pending(self) -> set[str]:
        """Keys handed out by ``ask`` and not yet told."""
        return set(self._pending)

    def result(self, key: str) -> TrialResult | None:
        """The result told for ``key``, if any."""
        return self._results.get(key)

    def proposals(self) -> list[Proposal]:
        """Every proposal so far (asked, answered from earlier results, or waiting), in proposal order."""
        return list(self._proposed.values())

    def incumbent(self) -> Proposal | None:
        """The best trial so far: the best usable told result, the earliest proposal on a tie."""
        told = [p for p in self._proposed.values() if p.key in self._results]
        i = best_index([score_of(self._results[p.key], self.metric) for p in told], self.mode)
        return told[i] if i is not None else None

    def decisions(self) -> list[RoundDecision]:
        """One per completed round; none for a strategy without rounds."""
        return []

    def undecided(self) -> set[str]:
        """Keys of told trials the strategy may still adopt (greedy: the answered candidates of a round not yet
        decided); a search keeps their weights until it decides. None for a strategy without rounds."""
        return set()

    def baseline_key(self) -> str | None:
        """Key of the trial deltas refer to (greedy: the base; grid: ``spec.baseline``'s combination); none here."""
        return None

    def released_checkpoints(self) -> list[str]:
        """Full-budget keys (``TrialSpec.full_key``) whose checkpoint folders no trial of this search will resume
        from any more, each returned once (the execution layer deletes them); none by default. Greedy with halving:
        the discontinued candidates of each decided round."""
        return []

    def pareto_front(self) -> list[Proposal]:
        """The told trials no other beats in every objective, for a strategy with a second (cost) objective;
        empty for one objective."""
        return []


class Strategy(Reporting, ABC):
    """Ask/tell search strategy for one ``strategy.kind`` (registered in :mod:`eaglesearch.search.registry`).

    A subclass implements the search (``ask``, ``tell``, ``finished``) and how many trials it plans
    (``expected_trials``); what it can reach before it runs (``planned_trials``, ``reachable``) defaults to the
    trials its spec declares (``declared_trials``: greedy's first round, every grid combination, an Optuna
    space's corners). ``metric`` and ``mode`` say what the results are ranked by."""

    kind: ClassVar[str]

    def __init__(self, spec: StrategySpec, factory: TrialFactory) -> None:
        self.spec = spec
        self.factory = factory
        self.metric = spec.objective
        self.mode = spec.mode
        self._results = {}
        self._pending = set()
        self._proposed = {}

    @classmethod
    def from_search(cls, loaded: LoadedSearch, comparator: GainComparator | None = None) -> Self:
        """A fresh strategy for a loaded search space (its ``space.strategy``, trials built by its factory).
        ``comparator`` pairs two trials item by item, for a strategy whose decisions compare trials (greedy's
        ``adopt``); the others do without."""
        return cls(loaded.space.strategy, loaded.factory)

    def _record(self, proposal: Proposal) -> None:
        """Note a proposal the strategy made (the first proposal of a key stands)."""
        self._proposed.setdefault(proposal.key, proposal)

    # -- the search ---------------------------------------------------------------------------------------------

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
    def expected_trials(self) -> list[int]:
        """Trials per round if nothing fails and nothing stops early (what ``plan`` shows)."""

    # -- what it can reach, before it runs ----------------------------------------------------------------------

    @classmethod
    def reachable(cls, loaded: LoadedSearch) -> Iterator[Candidate]:
        """Every trial this strategy can produce (or, where that is too many, a sample that bounds them), with the
        strategy entry each comes from: what the preflight checks. Default: the trials the spec declares.
        A trial no model can build is a ``SpecError`` at its entry."""
        for d in declared(loaded):
            yield Candidate(build(loaded, d.entry, lambda d=d: loaded.factory.make(d.experts, d.assignments)), d.entry)

    @classmethod
    def planned_trials(cls, loaded: LoadedSearch) -> list[TrialSpec]:
        """The trials whose cost ``plan`` reports, one per key. Default: every reachable trial."""
        return distinct(c.trial for c in cls.reachable(loaded))


@dataclass(frozen=True)
class Candidate:
    """A trial a strategy can produce, and the strategy entry it comes from (where a problem with it is reported)."""

    trial: TrialSpec
    entry: Loc


def declared(loaded: LoadedSearch) -> list[DeclaredTrial]:
    """The trials ``loaded``'s strategy spec declares (the loader has built each one already)."""
    return loaded.space.strategy.declared_trials(loaded.factory.base_dict()["model"]["experts"])


def build(loaded: LoadedSearch, entry: Loc, make: Callable[[], TrialSpec], what: str = "a trial") -> TrialSpec:
    """``make()``, or a ``SpecError`` at the strategy ``entry`` when the trial cannot be built (e.g. a set of
    experts a later greedy round reaches that no model can take); ``what`` names the trial in the message."""
    try:
        return make()
    except ValueError as err:  # includes pydantic's ValidationError
        doc = loaded.doc
        raise SpecError.single(format_loc(entry), f"the search can reach {what} that cannot be built: {err}",
                               file=doc.path, line=doc.line_of(entry)) from None


def distinct(trials: Iterable[TrialSpec]) -> list[TrialSpec]:
    """``trials`` with later repeats of a key left out."""
    seen: dict[str, TrialSpec] = {}
    for t in trials:
        seen.setdefault(t.key, t)
    return list(seen.values())
