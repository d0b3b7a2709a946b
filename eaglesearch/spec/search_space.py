"""A search space (``search_spaces/*.yaml``): a recipe, a strategy and the resources each trial gets."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer, model_validator

from eaglesearch.spec.base import SpecModel
from eaglesearch.spec.custom_expert import DeclaresExperts
from eaglesearch.spec.declared import DeclaredTrial, NothingToRun
from eaglesearch.spec.model import ExpertSpec
from eaglesearch.spec.optuna_space import OptunaStrategySpec

ExpertRef = str | ExpertSpec


def as_expert(ref: ExpertRef) -> ExpertSpec:
    return ExpertSpec(name=ref) if isinstance(ref, str) else ref


class HalvingSpec(SpecModel):
    """Successive halving inside each greedy round (``strategy.halving``): every candidate of the round trains to
    ``min_fraction`` of the final stage's steps (a rung), only the best ``1/eta`` continue from their checkpoints to
    ``eta`` times that budget, and so on up to the full budget; the round is decided on full-budget results only."""

    eta: int = Field(default=3, ge=2, le=16, description="keep the best 1/eta of the candidates at each rung")
    min_fraction: float = Field(
        default=0.25, gt=0, lt=1, description="budget of the first rung: a fraction of the final stage's steps")
    keep_rung_checkpoints: bool = Field(
        default=False, description="keep the rung checkpoints of discontinued candidates after their round (by "
                                   "default they are deleted when the round is decided; a continued candidate's "
                                   "full trial deletes its own when it finishes)")

    def fractions(self) -> tuple[float, ...]:
        """The rungs' budgets, ending with 1.0 (the full trial): min_fraction, min_fraction*eta, ... < 1, then 1."""
        out: list[float] = []
        value = self.min_fraction
        while value < 1 - 1e-9:
            out.append(round(value, 6))
            value *= self.eta
        return (*out, 1.0)


class AdoptSpec(SpecModel):
    """When a greedy round adopts a candidate (``strategy.adopt``); a round that adopts none ends the search.

    ``paired_ci``: each usable candidate's gain over the incumbent gets a paired bootstrap interval over the same
    evaluation items (``eaglesearch/evaluate/uncertainty.py``); with ``correction: holm`` the intervals are Holm's
    step-down at per-candidate confidence levels (candidates ordered by bootstrap p-value, the j-th of m at level
    ``1 - alpha / (m - j + 1)``, significant while every interval up to it excludes 0), with ``none`` every
    interval is at ``1 - alpha``. The significant candidate with the largest gain is adopted. ``min_gain``: the
    round's best is adopted when its point gain exceeds ``strategy.min_gain`` (no interval is consulted).

    Left out, a space keeps the rule it had before ``adopt`` existed: ``min_gain`` with ``stop_when_no_gain: true``,
    else every round adopts its best. ``adopt: {}`` is ``paired_ci`` with Holm at alpha 0.05: a round compares
    several candidates with one incumbent, and the best of k noisy point gains clears any fixed threshold more
    often as k grows, which only a corrected interval accounts for."""

    rule: Literal["paired_ci", "min_gain"] = Field(
        default="paired_ci", description="paired_ci: adopt only a gain whose (corrected) paired interval excludes "
        "0; min_gain: adopt the best when its point gain exceeds strategy.min_gain")
    alpha: float = Field(default=0.05, gt=0, lt=0.5,
                         description="paired_ci: the round's family-wise error rate (each interval at 1 - alpha "
                         "without correction)")
    correction: Literal["holm", "none"] = Field(
        default="holm", description="paired_ci: holm (step-down over the round's usable candidates) or none")

    @model_validator(mode="after")
    def _paired_settings(self) -> AdoptSpec:
        if self.rule == "min_gain":
            given = sorted({"alpha", "correction"} & self.model_fields_set)
            if given:
                raise ValueError(f"adopt.{given[0]} applies to adopt.rule paired_ci only; remove it or set "
                                 "rule: paired_ci")
        return self


class GreedyStrategySpec(SpecModel):
    """Greedy round-robin expert selection (Eagle §2.6): each round adds the pool expert that helps most."""

    kind: Literal["greedy"]
    base: tuple[ExpertRef, ...] = Field(min_length=1, description="experts every candidate starts from")
    candidates: tuple[ExpertRef, ...] = Field(min_length=1, description="pool of experts to add, one per trial")
    objective: str = Field(default="objective", description="metric the greedy choice maximizes (or minimizes)")
    mode: Literal["max", "min"] = "max"
    max_rounds: int | None = Field(default=None, gt=0, description="rounds of adding; default: until pool is empty")
    stop_when_no_gain: bool = Field(default=False, description="stop when a round's best does not beat the incumbent")
    min_gain: float = Field(default=0.0, ge=0, description="gain a round must exceed to count (with stop_when_no_gain)")
    on_tie: Literal["pick", "add_seeds"] = Field(
        default="pick",
        description="when the round's best two are not separated (their 95% intervals overlap): pick the higher "
        "(pick) or train both again with `tie_seeds` more seeds and decide on the mean over seeds (add_seeds)",
    )
    tie_seeds: int = Field(default=2, ge=1, le=8, description="extra seeds per tied candidate with add_seeds")
    halving: HalvingSpec | None = Field(
        default=None, description="successive halving inside each round ({eta, min_fraction}); default: every "
        "candidate trains the full budget")
    adopt: AdoptSpec | None = Field(
        default=None, description="when a round adopts a candidate ({rule: paired_ci | min_gain, alpha, "
        "correction: holm | none}); default: min_gain with stop_when_no_gain, else the round's best")

    @model_validator(mode="after")
    def _disjoint(self) -> GreedyStrategySpec:
        base = {as_expert(e).name for e in self.base}
        pool = [as_expert(e).name for e in self.candidates]
        overlap = sorted(base.intersection(pool))
        if overlap:
            raise ValueError(f"candidates already in base: {', '.join(overlap)}; remove them from one list")
        dupes = sorted({n for n in pool if pool.count(n) > 1})
        if dupes:
            raise ValueError(f"candidates listed twice: {', '.join(dupes)}")
        self._check_adopt()
        return self

    def _check_adopt(self) -> None:
        """Settings that contradict the adoption rule are errors, never silently ignored."""
        if self.adopt is None:
            return
        if "stop_when_no_gain" in self.model_fields_set and not self.stop_when_no_gain:
            raise ValueError("stop_when_no_gain: false contradicts adopt: with adopt, a round that adopts no "
                             "candidate ends the search; remove stop_when_no_gain (or adopt, to add every round's best)")
        if self.adopt.rule != "paired_ci":
            return
        if self.min_gain > 0:
            raise ValueError(f"min_gain {self.min_gain:g} applies to adopt.rule min_gain; under paired_ci the "
                             "interval decides: remove min_gain or set adopt.rule: min_gain")
        if self.on_tie == "add_seeds":
            raise ValueError("on_tie: add_seeds decides on a mean over seeds, which has no paired interval over "
                             "items; use on_tie: pick with adopt.rule paired_ci, or adopt.rule min_gain")
        if self.objective != "objective" and not self.objective.startswith("score/"):
            raise ValueError(f"objective '{self.objective}' has no paired interval; adopt.rule paired_ci needs "
                             "objective 'objective' or 'score/<benchmark>'")

    @model_serializer(mode="wrap")
    def _omit_default_adopt(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """No ``adopt`` key when it is left out (fingerprints of spaces written before it existed stay as they were)."""
        data = handler(self)
        if self.adopt is None:
            data.pop("adopt", None)
        return data

    @property
    def adoption_rule(self) -> str:
        """The rule rounds are decided by: ``paired_ci`` or ``min_gain`` (``adopt``, else ``min_gain`` with
        ``stop_when_no_gain``), or ``best`` (no ``adopt`` and no ``stop_when_no_gain``: every round adopts its best)."""
        if self.adopt is not None:
            return self.adopt.rule
        return "min_gain" if self.stop_when_no_gain else "best"

    @property
    def base_experts(self) -> tuple[ExpertSpec, ...]:
        return tuple(as_expert(e) for e in self.base)

    @property
    def candidate_experts(self) -> tuple[ExpertSpec, ...]:
        return tuple(as_expert(e) for e in self.candidates)

    def declared_trials(self, recipe_experts: list[dict[str, Any]]) -> list[DeclaredTrial]:
        """The base alone, then the base with each candidate (the first adding round's trials)."""
        base = self.base_experts
        return [DeclaredTrial(entry=("strategy", "base"), experts=base)] + [
            DeclaredTrial(entry=("strategy", "candidates", i), experts=(*base, c))
            for i, c in enumerate(self.candidate_experts)]


class GridStrategySpec(SpecModel):
    """Full factorial over ``factors`` (``experts`` or dotted trial paths such as ``train.lr``), minus ``exclude``."""

    kind: Literal["grid"]
    factors: dict[str, list[Any]] = Field(min_length=1)
    exclude: tuple[dict[str, Any], ...] = ()
    objective: str = "objective"
    mode: Literal["max", "min"] = "max"
    baseline: dict[str, Any] | None = Field(default=None, description="factor values of the row deltas refer to")

    @field_validator("factors")
    @classmethod
    def _non_empty(cls, factors: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for name, values in factors.items():
            if not values:
                raise ValueError(f"factor '{name}' has no values; give at least one")
        return factors

    @model_validator(mode="after")
    def _known_factor_names(self) -> GridStrategySpec:
        for i, rule in enumerate(self.exclude):
            unknown = sorted(set(rule) - set(self.factors))
            if unknown:
                raise ValueError(f"exclude[{i}] names {', '.join(unknown)}, which are not factors "
                                 f"(factors: {', '.join(self.factors)})")
        if self.baseline is not None:
            unknown = sorted(set(self.baseline) - set(self.factors))
            if unknown:
                raise ValueError(f"baseline names {', '.join(unknown)}, which are not factors")
        return self

    def combinations(self) -> Iterator[dict[str, Any]]:
        """Every factor assignment of the full factorial, in declaration order, minus excluded ones."""
        names = list(self.factors)
        for values in itertools.product(*(self.factors[n] for n in names)):
            combo = dict(zip(names, values, strict=True))
            if any(all(combo[k] == v for k, v in rule.items()) for rule in self.exclude):
                continue
            yield combo

    def declared_trials(self, recipe_experts: list[dict[str, Any]]) -> list[DeclaredTrial]:
        """Every combination, each reported at its first factor; ``NothingToRun`` when ``exclude`` leaves none or
        ``baseline`` matches none."""
        combos = list(self.combinations())
        if not combos:
            raise NothingToRun(("strategy", "exclude"), "every grid combination is excluded; nothing would run")
        if self.baseline is not None and self.baseline not in [{k: c[k] for k in self.baseline} for c in combos]:
            raise NothingToRun(("strategy", "baseline"), "baseline matches no grid combination")
        return [DeclaredTrial(entry=("strategy", "factors", next(iter(c))), assignments=c, factors=c) for c in combos]


StrategySpec = Annotated[GreedyStrategySpec | GridStrategySpec | OptunaStrategySpec, Field(discriminator="kind")]


class SchedulerSpec(SpecModel):
    """Early stopping of grid and Optuna trials by Ray Tune's ASHA scheduler (``scheduler: {kind: asha, ...}``).

    A trial evaluates itself every ``eval_every`` steps of its final stage on the first ``eval_limit`` items of
    each benchmark and reports that objective; ASHA stops the trials that fall behind at its rungs (``grace_period``
    steps, then ``reduction_factor`` times more, up to ``max_t``). The intermediate evaluations leave training
    untouched (same weights, RNG and result as without them); a stopped trial is recorded with status ``stopped``
    and never wins. Ray executor only: greedy searches use ``strategy.halving`` instead."""

    kind: Literal["asha"]
    eval_every: int = Field(gt=0, description="steps of the final stage between intermediate evaluations")
    eval_limit: int = Field(default=32, gt=0, description="items per benchmark in an intermediate evaluation")
    grace_period: int | None = Field(
        default=None, gt=0, description="steps every trial trains before it can be stopped; default: eval_every")
    reduction_factor: int = Field(default=3, ge=2, description="keep the best 1/reduction_factor at each rung")
    max_t: int | None = Field(
        default=None, gt=0, description="steps of a full trial's final stage; default: the recipe's")


class ResourcesSpec(SpecModel):
    cpus_per_trial: float = Field(default=2, gt=0)
    gpus_per_trial: float = Field(default=0, ge=0)
    max_concurrent_trials: int = Field(default=1, gt=0)
    max_failures: int = Field(default=1, ge=0, description="Ray retries after a crashed trial process")
    threads_per_trial: int | None = Field(default=None, gt=0, description="torch threads; default: cpus_per_trial")
    parallelism: Literal["ddp", "fsdp", "auto"] = Field(
        default="auto", description="how a trial's GPUs share the model: ddp (every GPU holds all weights, gradients "
        "and optimizer state), fsdp (those sharded across gpus_per_trial), auto (ddp when it fits, else fsdp)")
    gpu_memory_gb: float | None = Field(
        default=None, gt=0, description="memory of one GPU for the fit check; default: what the visible GPU reports "
        "(no check for CPU-only trials or when no GPU is visible)")

    @property
    def torch_threads(self) -> int:
        return self.threads_per_trial or max(1, int(self.cpus_per_trial))


class SearchSpace(DeclaresExperts):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    recipe: str = Field(description="path of a recipe yaml, relative to this file or to the project root, or a "
                        "recipe name: llava, eagle-prealign, tiny-llava, tiny-eagle-prealign (experiments/<name>.yaml)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="nested values merged over the recipe")
    strategy: StrategySpec
    resources: ResourcesSpec = ResourcesSpec()
    scheduler: SchedulerSpec | None = Field(
        default=None, description="early stopping for grid and optuna searches on Ray ({kind: asha, eval_every, ...})")
    # Not part of the search's fingerprint (exclude): what a search keeps changes none of its results.
    keep_best: int = Field(
        default=1, ge=0, exclude=True,
        description="final weights kept of the best N full-budget trials (MLflow artifacts of their runs and "
        "versions of the registered model named after the search); the others' weights are deleted as soon as "
        "they fall out of the best N; 0 keeps none and saves no weights")

    @model_validator(mode="after")
    def _scheduler_fits(self) -> SearchSpace:
        if self.scheduler is not None and self.strategy.kind == "greedy":
            raise ValueError("scheduler: greedy rounds are decided on full-budget results; use strategy.halving "
                             "({eta, min_fraction}) for successive halving inside a round, and drop scheduler")
        return self
