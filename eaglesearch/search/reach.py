"""Which trials a search can reach: what ``plan`` sizes and what the preflight checks, before anything runs.

Pure enumeration over the strategy's spec (and, for grid and other strategies, the strategy's own first proposals):
no model is built here. ``trial/plan.py``, ``trial/memory.py`` and ``trial/preflight.py`` take these trials.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

from eaglesearch.search.base import Strategy
from eaglesearch.search.factory import make_strategy
from eaglesearch.spec import ExpertSpec, LoadedSearch, TrialSpec, grid_combinations
from eaglesearch.spec.optuna_space import OptunaStrategySpec
from eaglesearch.spec.search_space import GreedyStrategySpec, GridStrategySpec
from eaglesearch.spec.yaml_source import Loc

MAX_GREEDY_SETS = 4096  # expert sets checked for a greedy search; past it, the singletons and the largest set

def _first_proposals(strategy: Strategy) -> list[TrialSpec]:
    trials = []
    while (p := strategy.ask()) is not None:
        trials.append(p.trial)
    return trials


def planned_trials(loaded: LoadedSearch) -> list[TrialSpec]:
    """The trials whose cost the plan reports: greedy's base, base + each candidate and the largest reachable
    model; every grid trial; an Optuna space's corners (each choice and range end, the largest expert set)."""
    spec = loaded.space.strategy
    if isinstance(spec, GreedyStrategySpec):
        base = spec.base_experts
        trials = [loaded.factory.make(base)]
        trials += [loaded.factory.make((*base, c)) for c in spec.candidate_experts]
        trials.append(loaded.factory.make((*base, *spec.candidate_experts)))
    elif isinstance(spec, OptunaStrategySpec):  # the corners of the space: each choice and range end, largest set
        recipe_experts = loaded.factory.base_dict()["model"]["experts"]
        trials = [loaded.factory.make(assignments=spec.assignments(p, recipe_experts)) for p in spec.corner_points()]
    else:
        trials = _first_proposals(make_strategy(loaded))
    seen: dict[str, TrialSpec] = {}
    for t in trials:
        seen.setdefault(t.key, t)
    return list(seen.values())


@dataclass(frozen=True)
class Candidate:
    """A trial the strategy can produce, and the strategy entry it comes from (for the error's location)."""

    trial: TrialSpec
    entry: Loc


def candidate_trials(loaded: LoadedSearch) -> Iterator[Candidate]:
    """Every grid trial; for greedy, the base plus each set of candidates reachable within ``max_rounds``
    (the singletons and the largest set when there are more than :data:`MAX_GREEDY_SETS`); for any other
    strategy, the trials ``plan`` sizes for it (:func:`planned_trials`)."""
    spec = loaded.space.strategy
    if isinstance(spec, GridStrategySpec):
        for combo in grid_combinations(spec):
            yield Candidate(loaded.factory.make(assignments=combo), ("strategy", "factors", next(iter(combo))))
        return
    if not isinstance(spec, GreedyStrategySpec):  # any other strategy: the trials the planner sizes for it
        for trial in planned_trials(loaded):
            yield Candidate(trial, ("strategy",))
        return
    base, pool = spec.base_experts, spec.candidate_experts
    largest = min(len(pool), spec.max_rounds or len(pool))
    sizes = range(largest + 1)
    if sum(math.comb(len(pool), k) for k in sizes) > MAX_GREEDY_SETS:
        subsets: list[tuple[ExpertSpec, ...]] = [(), *((c,) for c in pool), tuple(pool[:largest])]
    else:
        subsets = [tuple(s) for k in sizes for s in itertools.combinations(pool, k)]
    for subset in subsets:
        entry: Loc = ("strategy", "candidates") if subset else ("strategy", "base")
        yield Candidate(loaded.factory.make((*base, *subset)), entry)
