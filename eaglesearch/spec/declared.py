"""The trials a strategy declaration names by itself, before any strategy runs.

Every strategy spec (``GreedyStrategySpec``, ``GridStrategySpec``, ``OptunaStrategySpec``) lists them with its
``declared_trials(recipe_experts)``: greedy's base and base + each candidate, every grid combination, the corners of
an Optuna space. The loader builds each one, so a value no trial can take is reported at the strategy entry that
wrote it before anything starts; the strategy classes of ``eaglesearch.search`` start what they can reach (what
``plan`` sizes and the preflight checks) from the same list. Pure data: nothing is built here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eaglesearch.spec.model import ExpertSpec
from eaglesearch.spec.yaml_source import Loc


@dataclass(frozen=True)
class DeclaredTrial:
    """One trial a strategy declaration names: what ``TrialFactory.make`` is given, and where it was written.

    ``experts`` (greedy) replaces the recipe's expert list; ``assignments`` sets dotted trial paths (``train.lr``,
    ``experts``); ``factors`` are the grid factor values the trial was built from, so an error about a field a
    factor set names that factor (empty when the strategy sets no factor)."""

    entry: Loc
    experts: tuple[ExpertSpec, ...] | None = None
    assignments: Mapping[str, Any] = field(default_factory=dict)
    factors: Mapping[str, Any] = field(default_factory=dict)


class NothingToRun(ValueError):
    """A strategy declaration that leaves no trial to run, or names a setting none of its trials has; ``entry``
    is the strategy field to fix."""

    def __init__(self, entry: Loc, message: str) -> None:
        super().__init__(message)
        self.entry = entry
