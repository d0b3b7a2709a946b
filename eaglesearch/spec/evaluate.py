"""How a trial is scored: generation settings, the objective, named aggregates, and the uncertainty settings."""

from __future__ import annotations

from pydantic import Field, model_validator

from eaglesearch.spec.base import SpecModel


class AggregateSpec(SpecModel):
    """A named average over benchmarks' primary scores, e.g. the paper's General = mean(MME/20, MMB, SEED, GQA)."""

    members: tuple[str, ...] = Field(min_length=1)
    scale: dict[str, float] = Field(default_factory=dict, description="divisor per member, e.g. {mme: 20}")
    percent: bool = Field(default=False, description="multiply [0,1] member scores by 100 (the paper's scale)")


class EvalSpec(SpecModel):
    batch_size: int = Field(default=32, gt=0)
    max_new_tokens: int = Field(default=8, gt=0)
    objective: str = Field(
        default="mean", description="'mean' (of the primary scores of `benchmarks`) or the name of an aggregate"
    )
    benchmarks: tuple[str, ...] | None = Field(
        default=None, description="which benchmarks the 'mean' objective averages; default: all"
    )
    aggregates: dict[str, AggregateSpec] = Field(default_factory=dict)
    bootstrap_resamples: int = Field(default=1000, ge=100, description="resamples for every 95% interval")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)

    @model_validator(mode="after")
    def _objective_exists(self) -> EvalSpec:
        if self.objective != "mean" and self.objective not in self.aggregates:
            known = ", ".join(["mean", *self.aggregates])
            raise ValueError(f"objective '{self.objective}' is neither 'mean' nor a declared aggregate ({known})")
        for name, agg in self.aggregates.items():
            unknown = sorted(set(agg.scale) - set(agg.members))
            if unknown:
                raise ValueError(f"aggregate '{name}': scale names {', '.join(unknown)}, which are not members")
        return self
