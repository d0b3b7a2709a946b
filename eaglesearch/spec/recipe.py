"""A recipe (``experiments/*.yaml``): everything about a trial except what the search varies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, create_model

from eaglesearch.spec.base import SpecModel
from eaglesearch.spec.custom_expert import DeclaresExperts
from eaglesearch.spec.data import DataSpec
from eaglesearch.spec.evaluate import EvalSpec
from eaglesearch.spec.model import ModelSpec
from eaglesearch.spec.train import TrainSpec


def _recipe_model_fields() -> dict[str, Any]:
    """``ModelSpec``'s fields as they are declared there (type, default, bounds, description), ``experts``
    optional: a recipe may leave them to the search space."""
    fields: dict[str, Any] = {name: (info.annotation, info) for name, info in ModelSpec.model_fields.items()}
    experts = ModelSpec.model_fields["experts"]
    fields["experts"] = (experts.annotation, Field(
        default=(), description="the vision experts; default: none, for a search space that chooses them"))
    return fields


if TYPE_CHECKING:  # the same fields as ModelSpec, as far as a type checker needs to know
    RecipeModelSpec = ModelSpec
else:
    RecipeModelSpec = create_model(
        "RecipeModelSpec", __base__=SpecModel, __module__=__name__,
        __doc__="A recipe's ``model:``: ``ModelSpec``'s fields, derived from it (a field added there is a recipe "
        "field too), with ``experts`` optional. ModelSpec's cross-field checks run on each trial, once the search "
        "space's overrides and choices are merged in.",
        **_recipe_model_fields())


class Recipe(DeclaresExperts):
    name: str = Field(min_length=1)
    description: str = ""
    scale: Literal["tiny", "tiny_random", "paper"] = Field(
        default="tiny", description="default preset of every expert: tiny (pretext-pretrained), tiny_random, paper")
    seed: int = 0
    model: RecipeModelSpec = RecipeModelSpec()
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
