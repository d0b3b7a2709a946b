"""A recipe (``experiments/*.yaml``): everything about a trial except what the search varies."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from eaglesearch.spec.base import SpecModel
from eaglesearch.spec.data import DataSpec
from eaglesearch.spec.evaluate import EvalSpec
from eaglesearch.spec.model import ExpertSpec, FusionName, LanguageModelSpec, TokenizerSpec
from eaglesearch.spec.train import TrainSpec


class RecipeModelSpec(SpecModel):
    """``ModelSpec`` with experts optional: a search space usually chooses them."""

    experts: tuple[ExpertSpec, ...] = ()
    grid: int = Field(default=8, gt=0)
    fusion: FusionName = "channel_concat"
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
