"""How a trial is scored."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from eaglesearch.spec.base import SpecModel


class EvalSpec(SpecModel):
    batch_size: int = Field(default=32, gt=0)
    max_new_tokens: int = Field(default=8, gt=0)
    objective: Literal["mean"] = Field(default="mean", description="aggregate of per-benchmark accuracies")
    benchmarks: tuple[str, ...] | None = Field(
        default=None, description="which benchmarks enter the objective; default: all"
    )
