"""Typed, validated declarations: recipes, search spaces, trials. Imports nothing else of eaglesearch."""

from eaglesearch.spec.data import BenchmarkSplitSpec, DataSpec, LlavaSplitSpec, SyntheticDataSpec
from eaglesearch.spec.errors import SpecError, SpecIssue
from eaglesearch.spec.evaluate import EvalSpec
from eaglesearch.spec.load import LoadedSearch, TrialFactory, load_recipe, load_search_space
from eaglesearch.spec.model import ExpertSpec, LanguageModelSpec, ModelSpec, TokenizerSpec
from eaglesearch.spec.optuna_space import ExpertSearchSpec, ObjectiveSpec, OptunaStrategySpec, ParamSpec
from eaglesearch.spec.recipe import Recipe
from eaglesearch.spec.search_space import (
    AdoptSpec,
    GreedyStrategySpec,
    GridStrategySpec,
    HalvingSpec,
    ResourcesSpec,
    SchedulerSpec,
    SearchSpace,
)
from eaglesearch.spec.train import TrainSpec
from eaglesearch.spec.trial import TrialResult, TrialSpec

__all__ = [
    "AdoptSpec", "BenchmarkSplitSpec", "DataSpec", "EvalSpec", "ExpertSearchSpec", "ExpertSpec", "GreedyStrategySpec", "GridStrategySpec",
    "HalvingSpec", "LanguageModelSpec", "LlavaSplitSpec", "LoadedSearch", "ModelSpec", "ObjectiveSpec", "OptunaStrategySpec", "ParamSpec",
    "Recipe", "ResourcesSpec", "SchedulerSpec", "SearchSpace", "SpecError",
    "SpecIssue", "SyntheticDataSpec", "TokenizerSpec", "TrainSpec", "TrialFactory", "TrialResult", "TrialSpec",
    "load_recipe", "load_search_space",
]
