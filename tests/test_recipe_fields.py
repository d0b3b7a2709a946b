"""One declaration of every field: a recipe's ``model:`` is ``ModelSpec``'s fields, and a recipe and a search space
share one ``experts:`` (custom encoder) section."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from eaglesearch.spec import ModelSpec, Recipe, SearchSpace
from eaglesearch.spec.custom_expert import DeclaresExperts
from eaglesearch.spec.recipe import RecipeModelSpec


def test_the_recipe_model_section_is_model_spec_with_experts_optional() -> None:
    assert list(RecipeModelSpec.model_fields) == list(ModelSpec.model_fields)
    for name, info in ModelSpec.model_fields.items():
        mine = RecipeModelSpec.model_fields[name]
        if name == "experts":
            assert mine.is_required() is False and info.is_required()
            continue
        assert (mine.annotation, mine.default, mine.description, mine.metadata) == (
            info.annotation, info.default, info.description, info.metadata), name
    assert Recipe(name="r").model.experts == ()


def test_the_recipe_model_section_keeps_model_spec_bounds() -> None:
    with pytest.raises(ValidationError) as err:
        Recipe.model_validate({"name": "r", "model": {"fusion_heads": 0}})
    assert [e["loc"] for e in err.value.errors()] == [("model", "fusion_heads")]


def test_recipe_and_search_space_share_one_declarations_section() -> None:
    assert issubclass(Recipe, DeclaresExperts) and issubclass(SearchSpace, DeclaresExperts)
    assert Recipe.model_fields["experts"].description == SearchSpace.model_fields["experts"].description
    declared = {"mine": {"factory": "m:f", "resolution": 32, "mean": [0, 0, 0], "std": [1, 1, 1], "channels": 8,
                         "stride": 4, "feature_layer": "last"}}
    recipe = Recipe.model_validate({"name": "r", "experts": declared})
    assert recipe.experts["mine"].name == "mine"  # the key is the name
    assert "experts" in recipe.model_dump() and "experts" not in Recipe(name="r").model_dump()
