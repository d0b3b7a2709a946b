"""Optuna search (``strategy.kind: optuna``) behind the ask/tell interface: TPE, or NSGA-II for accuracy vs cost.

Proposals come in batches of ``batch_size``: a batch is sampled at once, given every result of the batches before
it, and the next is sampled only when all of it is told. Completion order never changes what is proposed, so a
seed fixes the whole search, and a fresh strategy that is told the recorded results in proposal order (what the
execution layer does on resume: every proposal whose key is recorded is answered from the record) rebuilds the
same study and continues where the interrupted one stopped.

Three kinds of Optuna trial never reach a worker:

* infeasible ones (an ``exclude`` rule, an expert subset outside ``min_size..max_size``, a combination the model
  can't build): told as PRUNED (FAIL when the trial can't be built), so TPE learns to avoid the region, and the
  sampler is asked again;
* duplicates of a key already told: told the same values at once;
* duplicates of a key in the current batch: told when that key's result arrives.

None of them count towards ``n_trials``; ``max_asks`` bounds how many Optuna trials the search may use in all.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Self

import optuna

from eaglesearch.search.adoption import GainComparator
from eaglesearch.search.base import Proposal, Strategy, score_of
from eaglesearch.search.grid import factor_labels, format_value
from eaglesearch.search.optuna_space import directions, make_sampler, sample_point
from eaglesearch.spec import LoadedSearch, OptunaStrategySpec, TrialFactory, TrialResult
from eaglesearch.spec.optuna_space import EXPERTS, Point

ROLE = "optuna"
TrialState = optuna.trial.TrialState
optuna.logging.set_verbosity(logging.WARNING)  # a line per told trial drowns the progress panel


def dominates(a: tuple[float, ...], b: tuple[float, ...], modes: list[str]) -> bool:
    """True when ``a`` is at least as good as ``b`` in every objective and better in one (``modes``: max/min)."""
    signs = [1.0 if m == "max" else -1.0 for m in modes]
    at_least = all(s * x >= s * y for s, x, y in zip(signs, a, b, strict=True))
    better = any(s * x > s * y for s, x, y in zip(signs, a, b, strict=True))
    return at_least and better


def non_dominated(points: list[tuple[float, ...]], modes: list[str]) -> list[int]:
    """Indices of the points no other point dominates (equal points are all kept), in input order."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p, modes) for q in points)]


def _format(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else format_value(value)


class OptunaStrategy(Strategy):
    """Batches of sampled points; its reach is the space's corners (the defaults: each choice and range end, the
    largest expert set), what ``plan`` sizes and the preflight checks."""

    kind = "optuna"

    def __init__(self, spec: OptunaStrategySpec, factory: TrialFactory, concurrency: int = 1) -> None:
        super().__init__(spec, factory)
        self.spec: OptunaStrategySpec = spec
        self.batch_size = spec.batch_size or concurrency
        self.metrics = [spec.objective] + ([spec.cost.metric] if spec.cost is not None else [])
        self.modes = [spec.mode] + ([spec.cost.mode] if spec.cost is not None else [])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study = optuna.create_study(directions=directions(spec), sampler=make_sampler(spec, spec.seed))
        self._recipe_experts: list[dict[str, Any]] = factory.base_dict()["model"]["experts"]
        self._short = factor_labels([p for p in spec.params if not p.startswith(EXPERTS + ".")])
        self._points: dict[str, Point] = {}
        self._numbers: dict[str, list[int]] = {}  # key → Optuna trial numbers waiting for its result
        self._queue: list[Proposal] = []  # the current batch's proposals not yet handed out
        self._batch = 0
        self._asks = 0
        self._exhausted = False
        self.skipped: list[tuple[int, str]] = []  # (Optuna trial number, why it was not run)
        self.duplicates = 0  # Optuna trials answered with an earlier trial's result

    @classmethod
    def from_search(cls, loaded: LoadedSearch, comparator: GainComparator | None = None) -> Self:
        """Default batch: one proposal per worker, so every worker is busy and proposals don't depend on timing."""
        return cls(loaded.space.strategy, loaded.factory,  # type: ignore[arg-type]
                   concurrency=loaded.space.resources.max_concurrent_trials)

    # -- ask / tell ---------------------------------------------------------------------------------------------

    def ask(self) -> Proposal | None:
        if not self._queue and not self._pending and not self.finished:
            self._sample_batch()
        if not self._queue:
            return None
        proposal = self._queue.pop(0)
        self._pending.add(proposal.key)
        return proposal

    def tell(self, key: str, result: TrialResult) -> None:
        if key in self._results:
            return  # at-least-once delivery: the first told result stands
        if key not in self._proposed:
            raise ValueError(f"optuna search was told about trial {key}, which it has not proposed "
                             f"({len(self._proposed)} proposed so far)")
        self._results[key] = result
        self._pending.discard(key)
        self._queue = [p for p in self._queue if p.key != key]
        for number in self._numbers.pop(key, []):
            self._tell_study(number, result)

    # -- queries ------------------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        if self._queue or self._pending:
            return False
        return self._exhausted or len(self._proposed) >= self.spec.n_trials

    @property
    def exhausted(self) -> bool:
        """True when the search stopped short of ``n_trials`` because ``max_asks`` Optuna trials found no more."""
        return self._exhausted

    def expected_trials(self) -> list[int]:
        return [self.spec.n_trials]

    def point(self, key: str) -> Point:
        """The sampled values that produced ``key``."""
        return dict(self._points[key])

    def values(self, key: str) -> tuple[float, ...] | None:
        """The objective values of a told trial (``objective``, then ``cost``); None if any is unusable."""
        return self._values_of(self._results.get(key))

    def _values_of(self, result: TrialResult | None) -> tuple[float, ...] | None:
        values = tuple(score_of(result, m) for m in self.metrics)
        return None if any(v is None for v in values) else values  # type: ignore[return-value]

    def pareto_front(self) -> list[Proposal]:
        """The told trials no other told trial beats in every objective, best first by the first objective.

        With one objective this is the incumbent (and any trial tied with it)."""
        usable = [(k, v) for k in self._proposed if (v := self.values(k)) is not None]
        front = [usable[i] for i in non_dominated([v for _, v in usable], self.modes)]
        sign = -1.0 if self.modes[0] == "max" else 1.0
        front.sort(key=lambda kv: sign * kv[1][0])
        return [self._proposed[k] for k, _ in front]

    # -- sampling -----------------------------------------------------------------------------------------------

    def _sample_batch(self) -> None:
        """Sample the next batch: up to ``batch_size`` new keys (fewer when the budget or ``max_asks`` ends)."""
        want = min(self.batch_size, self.spec.n_trials - len(self._proposed))
        added = 0
        while added < want:
            if self._asks >= self.spec.asks_limit:
                self._exhausted = True
                break
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trial = self.study.ask()
                point = sample_point(trial, self.spec)
            self._asks += 1
            proposal = self._propose(trial.number, point)
            if proposal is not None:
                self._queue.append(proposal)
                added += 1
        self._batch += 1

    def _propose(self, number: int, point: Point) -> Proposal | None:
        """A new proposal for the Optuna trial ``number``, or None when it is infeasible or a duplicate (then the
        trial is told, or left waiting for its twin's result)."""
        why = self.spec.feasible(point)
        if why is not None:
            self._skip(number, why, TrialState.PRUNED)
            return None
        try:
            trial = self.factory.make(assignments=self.spec.assignments(point, self._recipe_experts))
        except ValueError as err:  # includes pydantic's ValidationError: a combination the model can't build
            self._skip(number, f"cannot build the trial: {err}", TrialState.FAIL)
            return None
        key = trial.key
        if key in self._results:
            self.duplicates += 1
            self._tell_study(number, self._results[key])
            return None
        if key in self._numbers:
            self.duplicates += 1
            self._numbers[key].append(number)
            return None
        extras = " ".join(f"{self._short[p]}={_format(v)}" for p, v in point.items() if p in self._short)
        label = f"{trial.label} {extras}" if extras else trial.label
        proposal = Proposal(trial=trial, round=self._batch, label=label, role=ROLE, added=None)
        self._record(proposal)
        self._points[key] = point
        self._numbers[key] = [number]
        return proposal

    def _skip(self, number: int, why: str, state: TrialState) -> None:
        self.skipped.append((number, why))
        self.study.tell(number, state=state)

    def _tell_study(self, number: int, result: TrialResult) -> None:
        values = self._values_of(result)
        if result.status == "stopped":  # ended early by the scheduler: Optuna's own notion of it
            self.study.tell(number, state=TrialState.PRUNED)
        elif values is None:
            self.study.tell(number, state=TrialState.FAIL)
        else:
            self.study.tell(number, list(values) if len(values) > 1 else values[0])
