"""Greedy round-robin expert selection (Eagle §2.6, ``reference/eagle.md`` §5(e)).

Round 0 evaluates the base experts alone. Round r ≥ 1 evaluates ``incumbent ∪ {e}`` for every expert ``e`` still
in the pool (pool order), waits for all of them (the barrier), and adopts the best usable one. Expert order in a
trial is base order, then experts in the order they were added, then the candidate.

The search stops when the pool is empty, after ``max_rounds`` adding rounds, when every trial of a round failed,
when the base failed, or (``stop_when_no_gain``) when a round's best does not beat the incumbent by more than
``min_gain``; the reason is the last :class:`RoundDecision`'s ``stopped``.

With ``on_tie: add_seeds``, a round whose best two candidates are not separated (their recorded 95% intervals of
the ranking metric overlap) is extended before it is decided: both are trained again with ``tie_seeds`` more
seeds, and every candidate's value becomes the mean over its seeds.

With ``halving: {eta, min_fraction}``, an adding round with two or more candidates climbs a successive-halving
ladder (:mod:`eaglesearch.search.halving`) before it is decided: every candidate first trains to ``min_fraction``
of the final stage's steps, only the best ``1/eta`` continue (from their checkpoints) to ``eta`` times that, up to
the full budget, and the round is decided (ties, seeds, gain) on the full-budget results only; each halving round
records how its rungs ranked the candidates that also ran the full budget (Spearman's rho). Once it is decided, the
discontinued candidates' checkpoints are handed to the execution layer for deletion (:meth:`released_checkpoints`)
unless ``halving.keep_rung_checkpoints``.

Which candidate a round adopts is the spec's ``adoption_rule`` (:mod:`eaglesearch.search.adoption`): the round's
best (``best``), the best when its gain exceeds ``min_gain`` (``min_gain``), or the largest gain whose paired
interval excludes 0 after Holm's correction over the round (``paired_ci``, with the ``comparator`` the execution
layer supplies). A round that adopts nothing ends the search. Every candidate's gain, interval and verdict are in
the round's :class:`RoundDecision`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

from eaglesearch.search.adoption import Contender, GainComparator, Judgement, RuleSettings, describe, judge
from eaglesearch.search.base import (
    Candidate,
    CandidateVerdict,
    Proposal,
    RoundDecision,
    Strategy,
    best_index,
    build,
    distinct,
    improvement,
    score_of,
)
from eaglesearch.search.halving import RUNG, Ladder, keep_count
from eaglesearch.spec import ExpertSpec, GreedyStrategySpec, LoadedSearch, TrialFactory, TrialResult, TrialSpec
from eaglesearch.spec.yaml_source import Loc

BASE_FAILED = "base failed"
ALL_FAILED = "all candidates failed"
NO_GAIN = "no gain"
NOT_SIGNIFICANT = "no significant gain"
POOL_EMPTY = "pool empty"
MAX_ROUNDS = "max_rounds"
MAX_GREEDY_SETS = 4096  # expert sets the preflight checks; past it, the singletons and the largest set


class GreedyStrategy(Strategy):
    kind = "greedy"

    def __init__(self, spec: GreedyStrategySpec, factory: TrialFactory,
                 comparator: GainComparator | None = None) -> None:
        super().__init__(spec, factory)
        self.spec: GreedyStrategySpec = spec
        self.comparator = comparator  # pairs a candidate with the incumbent item by item (needed by paired_ci)
        adopt = spec.adopt
        self._rule = RuleSettings(rule=spec.adoption_rule, min_gain=spec.min_gain,
                                  alpha=adopt.alpha if adopt else 0.05, correction=adopt.correction if adopt else "holm",
                                  metric=spec.objective, mode=spec.mode)
        self._base: tuple[ExpertSpec, ...] = spec.base_experts
        self._pool: list[ExpertSpec] = list(spec.candidate_experts)
        self._added: list[ExpertSpec] = []
        self._round = 0
        self._proposals: list[Proposal] = []  # the current round's, in pool order
        self._asked: set[str] = set()
        self._decisions: list[RoundDecision] = []
        self._incumbent: Proposal | None = None
        self._incumbent_objective: float | None = None
        self._base_key: str | None = None
        self._finished = False
        self._seeds: dict[str, list[str]] = {}  # candidate key → keys of its extra-seed trials (add_seeds)
        self._reseeded: set[int] = set()  # rounds already extended with extra seeds
        self._ladder: Ladder | None = None  # the current round's successive-halving rungs (halving only)
        self._released: list[str] = []  # full keys of discontinued candidates, until released_checkpoints() drains
        self._start_round()

    # -- ask / tell ---------------------------------------------------------------------------------------------

    def ask(self) -> Proposal | None:
        if self._finished:
            return None
        for p in self._proposals:
            key = p.key
            if key not in self._results and key not in self._asked:
                self._asked.add(key)
                self._pending.add(key)
                return p
        return None

    def tell(self, key: str, result: TrialResult) -> None:
        if key in self._results:
            return  # at-least-once delivery: the first told result stands
        if key not in self._proposed:
            raise ValueError(f"greedy search was told about trial {key}, which it has not proposed "
                             f"(known: rounds 0..{self._round})")
        self._results[key] = result
        self._pending.discard(key)
        self._advance()

    # -- queries ------------------------------------------------------------------------------------------------

    @classmethod
    def from_search(cls, loaded: LoadedSearch, comparator: GainComparator | None = None) -> GreedyStrategy:
        return cls(loaded.space.strategy, loaded.factory, comparator)  # type: ignore[arg-type]

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def round(self) -> int:
        """The round in flight (or the last one, once finished)."""
        return self._round

    def decisions(self) -> list[RoundDecision]:
        return list(self._decisions)

    def incumbent(self) -> Proposal | None:
        return self._incumbent

    def baseline_key(self) -> str | None:
        return self._base_key

    def undecided(self) -> set[str]:
        if self._finished:
            return set()
        return {p.key for p in self._proposals if p.key in self._results}

    def chosen(self) -> tuple[str, ...]:
        """Names of the experts chosen so far: the base, then the added ones in order."""
        return tuple(e.name for e in (*self._base, *self._added))

    def expected_trials(self) -> list[int]:
        n = len(self.spec.candidates)
        rounds = n if self.spec.max_rounds is None else min(n, self.spec.max_rounds)
        return [1] + [self._round_trials(n - r) for r in range(rounds)]

    def _round_trials(self, n: int) -> int:
        """Trials of an adding round with ``n`` candidates: ``n``, or every rung's with halving."""
        halving = self.spec.halving
        if halving is None or n <= 1:
            return n
        total, entering = n, n
        for budget in halving.fractions()[1:]:
            entering = keep_count(entering, halving.eta)
            total += entering
            if budget >= 1 or entering == 1:
                break
        return total

    # -- what it can reach ---------------------------------------------------------------------------------------

    @classmethod
    def planned_trials(cls, loaded: LoadedSearch) -> list[TrialSpec]:
        """The base, the base with each candidate, and the largest model a search can reach (base + every
        candidate): the smallest and biggest of each round's trials."""
        spec, make = loaded.space.strategy, loaded.factory.make
        assert isinstance(spec, GreedyStrategySpec)
        base, pool = spec.base_experts, spec.candidate_experts
        return distinct([make(base), *(make((*base, c)) for c in pool), make((*base, *pool))])

    @classmethod
    def reachable(cls, loaded: LoadedSearch) -> Iterator[Candidate]:
        """The base plus every set of candidates a search can add within ``max_rounds``; past
        :data:`MAX_GREEDY_SETS` sets, the singletons and the largest set."""
        spec = loaded.space.strategy
        assert isinstance(spec, GreedyStrategySpec)
        base, pool = spec.base_experts, spec.candidate_experts
        largest = min(len(pool), spec.max_rounds or len(pool))
        sizes = range(largest + 1)
        if sum(math.comb(len(pool), k) for k in sizes) > MAX_GREEDY_SETS:
            subsets: list[tuple[ExpertSpec, ...]] = [(), *((c,) for c in pool), tuple(pool[:largest])]
        else:
            subsets = [tuple(s) for k in sizes for s in itertools.combinations(pool, k)]
        for subset in subsets:
            entry: Loc = ("strategy", "candidates") if subset else ("strategy", "base")
            trial = build(loaded, entry, lambda s=subset: loaded.factory.make((*base, *s)),
                          what=f"the expert set {'+'.join(e.name for e in (*base, *subset))} (a later round)")
            yield Candidate(trial, entry)

    # -- round machinery ----------------------------------------------------------------------------------------

    def _start_round(self) -> None:
        chosen = (*self._base, *self._added)
        if self._round == 0:
            trial = self.factory.make(chosen)
            self._proposals = [Proposal(trial=trial, round=0, label=trial.label, role="base", added=None)]
            self._base_key = trial.key
        else:
            self._proposals = []
            for expert in self._pool:
                trial = self.factory.make((*chosen, expert))
                self._proposals.append(
                    Proposal(trial=trial, round=self._round, label=trial.label, role="candidate", added=expert.name)
                )
            if self.spec.halving is not None:
                self._ladder = Ladder(self.spec.halving, self._proposals)
                self._proposals = list(self._ladder.current)
        for p in self._proposals:
            self._record(p)

    def _advance(self) -> None:
        """Decide every round whose trials are all answered (told now, or earlier: pre-told or memoised)."""
        while not self._finished and all(p.key in self._results for p in self._proposals):
            if self._climb():
                continue
            if self._extend_with_seeds():
                continue
            self._decide()
            if not self._finished:
                self._round += 1
                self._start_round()

    def _climb(self) -> bool:
        """With halving, move the round's survivors to the next rung once the current one is answered. True when
        new proposals were added (the round must wait for them)."""
        ladder = self._ladder
        if ladder is None or ladder.done or self._round == 0:
            return False
        added = ladder.next_rung(self._results.get, self.metric, self.mode)
        for p in added:
            self._proposals.append(p)
            self._record(p)
        return bool(added)

    def _interval(self, key: str) -> tuple[float, float] | None:
        """The recorded 95% interval of the ranking metric for a trial, if the result carries one."""
        result = self._results.get(key)
        if result is None:
            return None
        if self.metric == "objective":
            names = ("objective_low", "objective_high")
        elif self.metric.startswith("score/"):
            bench = self.metric.removeprefix("score/")
            names = (f"score_low/{bench}", f"score_high/{bench}")
        else:
            return None
        low, high = (result.metrics.get(n) for n in names)
        return None if low is None or high is None else (low, high)

    def _value(self, p: Proposal) -> float | None:
        """A candidate's value: its score, or the mean over its seeds once it was re-trained (add_seeds)."""
        first = score_of(self._results[p.key], self.metric)
        if first is None or p.key not in self._seeds:
            return first
        values = [score_of(self._results[k], self.metric) for k in self._seeds[p.key]]
        usable = [first, *(v for v in values if v is not None)]
        return math.fsum(usable) / len(usable)

    def _extend_with_seeds(self) -> bool:
        """With add_seeds, propose extra seeds for the round's best two when their intervals overlap (once per
        round). True when new proposals were added (the round must wait for them)."""
        if self.spec.on_tie != "add_seeds" or self._round == 0 or self._round in self._reseeded:
            return False
        self._reseeded.add(self._round)
        originals = [p for p in self._proposals if p.role == "candidate"]
        values = [score_of(self._results[p.key], self.metric) for p in originals]
        order = sorted((i for i, v in enumerate(values) if v is not None),
                       key=lambda i: (-values[i] if self.mode == "max" else values[i], i))  # type: ignore[operator]
        if len(order) < 2:
            return False
        first, second = (originals[i] for i in order[:2])
        a, b = self._interval(first.key), self._interval(second.key)
        if a is None or b is None or a[1] < b[0] or b[1] < a[0]:
            return False  # separated (or no interval to judge by): decide as usual
        for p in (first, second):
            keys = []
            for extra in range(1, self.spec.tie_seeds + 1):
                seed = p.trial.seed + extra
                trial = p.trial.model_copy(update={"seed": seed})
                reseed = Proposal(trial=trial, round=self._round, label=f"{p.label} seed={seed}", role="reseed",
                                  added=p.added)
                self._proposals.append(reseed)
                self._record(reseed)
                keys.append(reseed.key)
            self._seeds[p.key] = keys
        return True

    def released_checkpoints(self) -> list[str]:
        released, self._released = self._released, []
        return released

    def _release_discontinued(self) -> None:
        """The round is decided: the rung checkpoints of candidates that never reached the full budget are no longer
        needed (``halving.keep_rung_checkpoints`` keeps them)."""
        halving = self.spec.halving
        if halving is None or halving.keep_rung_checkpoints:
            return
        full = {p.key for p in self._proposals if p.role != RUNG}
        for p in self._proposals:
            key = p.trial.full_key
            if p.role == RUNG and key not in full and key not in self._released:
                self._released.append(key)

    def _decide(self) -> None:
        self._release_discontinued()
        rows = tuple((p.label, p.key, score_of(self._results[p.key], self.metric), self._results[p.key].status)
                     for p in self._proposals)
        originals = [p for p in self._proposals if p.role not in ("reseed", RUNG)]
        objectives = [self._value(p) for p in originals]
        previous = self._incumbent_objective
        stopped: str | None = None
        verdicts: tuple[CandidateVerdict, ...] = ()
        if self._round == 0:
            i = best_index(objectives, self.mode)
            if i is None:
                stopped = BASE_FAILED
        else:
            judgement = self._judge(originals, objectives)
            i, verdicts = judgement.adopted, judgement.verdicts
            if best_index(objectives, self.mode) is None:
                stopped = ALL_FAILED
            elif i is None:
                stopped = NOT_SIGNIFICANT if self._rule.rule == "paired_ci" else NO_GAIN

        # The adopted candidate's value; when none is, the round's best (what the report says fell short).
        shown = i if i is not None else best_index(objectives, self.mode)
        value = objectives[shown] if shown is not None else None
        gain = improvement(value, previous, self.mode) if value is not None and previous is not None else None
        chosen: Proposal | None = originals[i] if i is not None else None
        if chosen is not None:
            self._incumbent, self._incumbent_objective = chosen, value
            if chosen.role == "candidate":
                expert = next(e for e in self._pool if e.name == chosen.added)
                self._pool.remove(expert)
                self._added.append(expert)
        if stopped is None and not self._pool:
            stopped = POOL_EMPTY
        if stopped is None and self.spec.max_rounds is not None and self._round >= self.spec.max_rounds:
            stopped = MAX_ROUNDS

        self._decisions.append(RoundDecision(
            round=self._round,
            candidates=rows,
            chosen_label=chosen.label if chosen else None,
            chosen_key=chosen.key if chosen else None,
            added=chosen.added if chosen else None,
            objective=value,
            previous_objective=previous,
            gain=gain,
            stopped=stopped,
            rule=describe(self._rule) if self._round > 0 else None,
            verdicts=verdicts,
            rungs=self._ladder.correlations(self._results.get, self.metric) if self._ladder and self._round else (),
        ))
        if stopped is not None:
            self._finished = True

    def _judge(self, originals: list[Proposal], objectives: list[float | None]) -> Judgement:
        """The adoption rule applied to an adding round's full-budget candidates (``objectives``: their values)."""
        previous = self._incumbent_objective
        incumbent = self._results.get(self._incumbent.key) if self._incumbent is not None else None
        seeded = self._incumbent is not None and self._incumbent.key in self._seeds
        contenders = [Contender(label=p.label, key=p.key, result=self._results[p.key],
                                gain=None if v is None or previous is None else improvement(v, previous, self.mode),
                                pairable=not seeded and p.key not in self._seeds, added=p.added)
                      for p, v in zip(originals, objectives, strict=True)]
        family = self._ladder.entered(self._results.get, self.metric) if self._ladder is not None else 0
        return judge(contenders, incumbent, self._rule, self.comparator, family)
