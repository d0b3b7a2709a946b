"""The strategy registry: every declared kind has a class, an unknown kind is an error naming the valid ones, and a
new strategy needs only ask/tell/finished/expected_trials to get the reporting defaults."""

from __future__ import annotations

import typing

import pytest

from eaglesearch.search import Proposal, Strategy, strategy_class
from eaglesearch.search.registry import STRATEGIES
from eaglesearch.spec import GridStrategySpec, Recipe, TrialFactory, TrialResult
from eaglesearch.spec.search_space import StrategySpec

FACTORY = TrialFactory(recipe=Recipe(name="t"))


def test_every_declared_kind_has_a_registered_class_and_nothing_else_is_registered() -> None:
    union = typing.get_args(typing.get_args(StrategySpec)[0])
    declared = {typing.get_args(spec.model_fields["kind"].annotation)[0] for spec in union}
    assert declared == set(STRATEGIES)
    for kind in declared:
        assert strategy_class(kind).kind == kind


def test_an_unknown_kind_is_an_error_naming_the_registered_kinds() -> None:
    with pytest.raises(ValueError, match="strategy kind 'bayes' has no implementation; use one of: greedy, grid, optuna"):
        strategy_class("bayes")


class OneByOne(Strategy):
    """A strategy written against the small interface only: the grid's combinations, one at a time."""

    kind = "grid"

    def __init__(self, spec: GridStrategySpec, factory: TrialFactory) -> None:
        super().__init__(spec, factory)
        self._todo = [Proposal(trial=factory.make(assignments=c), round=0, label=str(c), role="grid")
                      for c in spec.combinations()]

    def ask(self) -> Proposal | None:
        if self._pending or not self._todo:
            return None
        p = self._todo.pop(0)
        self._record(p)
        self._pending.add(p.key)
        return p

    def tell(self, key: str, result: TrialResult) -> None:
        self._results.setdefault(key, result)
        self._pending.discard(key)

    @property
    def finished(self) -> bool:
        return not self._todo and not self._pending

    def expected_trials(self) -> list[int]:
        return [len(self._todo) + len(self._proposed)]


def test_the_reporting_defaults_serve_a_strategy_that_implements_only_the_search() -> None:
    spec = GridStrategySpec(kind="grid", factors={"experts": [["a"], ["b"], ["c"]]}, mode="min")
    s = OneByOne(spec, FACTORY)
    assert s.incumbent() is None and s.decisions() == [] and s.baseline_key() is None and s.pareto_front() == []
    values = iter([0.5, 0.2, 0.2])
    while (p := s.ask()) is not None:
        assert s.pending() == {p.key}
        s.tell(p.key, TrialResult(key=p.key, status="finished", objective=next(values)))
    assert s.finished and s.pending() == set() and s.expected_trials() == [3]
    second = s.proposals()[1]
    assert s.incumbent() == second  # min mode; a tie goes to the earlier proposal
    assert s.result(second.key) is not None and s.result(second.key).objective == 0.2
