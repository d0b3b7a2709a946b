"""A recipe (``experiments/*.yaml``): everything about a trial except what the search varies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from eaglesearch.spec.base import SpecModel
from eaglesearch.spec.custom_expert import Declarations, named_declarations
from eaglesearch.spec.data import DataSpec
from eaglesearch.spec.evaluate import EvalSpec
from eaglesearch.spec.model import (
    FUSION_NORM_HELP,
    ExpertSpec,
    FusionName,
    FusionNormName,
    LanguageModelSpec,
    TokenizerSpec,
    omit_fusion_norm,
)
from eaglesearch.spec.train import TrainSpec


class RecipeModelSpec(SpecModel):
    """``ModelSpec`` with experts optional: a search space usually chooses them."""

    experts: tuple[ExpertSpec, ...] = ()
    grid: int = Field(default=8, gt=0)
    fusion: FusionName = "channel_concat"
    fusion_norm: FusionNormName = Field(default="none", description=FUSION_NORM_HELP, exclude_if=omit_fusion_norm)
    fusion_heads: int = Field(default=4, gt=0)
    fusion_points: int = Field(default=4, gt=0)
    projector: Literal["mlp2x_gelu"] = "mlp2x_gelu"
    freeze_projector: bool = False
    lm: LanguageModelSpec = LanguageModelSpec()
    tokenizer: TokenizerSpec = TokenizerSpec()


class Recipe(SpecModel):
    name: str = Field(min_length=1)
    description: str = ""
    scale: Literal["tiny", "tiny_random", "paper"] = Field(
        default="tiny", description="default preset of every expert: tiny (pretext-pretrained), tiny_random, paper")
    seed: int = 0
    model: RecipeModelSpec = RecipeModelSpec()
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    experts: Declarations = Field(default_factory=dict, description="the user's own encoders by name: factory "
                                  "'module:function', resolution, mean, std, channels, stride, feature_layer")

    _named = field_validator("experts", mode="before")(named_declarations)

    @model_serializer(mode="wrap")
    def _omit_no_declarations(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """No ``experts`` key when nothing is declared (fingerprints of existing recipes stay as they were)."""
        data = handler(self)
        if not self.experts:
            data.pop("experts", None)
        return data
