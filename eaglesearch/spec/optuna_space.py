"""The declaration of an Optuna search (``strategy.kind: optuna``): what is sampled, how, and how much.

Pure data and pure functions: the sampler itself lives in ``eaglesearch/search/`` (the only place that imports
Optuna). What is here is what ``validate``/``plan`` need without a sampler: which sampled point is feasible
(expert-set size, ``exclude`` rules) and which trial assignments a sampled point becomes, so that loading a search
space can build its corner trials and fail early on a bad path or value.

A sampled point is a ``dict`` from parameter name to value: ``experts`` (a tuple of :class:`ExpertSpec`, base
first, then the chosen pool experts in pool order), every dotted trial path of ``params`` (``model.fusion``,
``train.lr``, ``train.stages.sft.lr``) and per-expert fields (``experts.clip.resolution`` for one expert,
``experts.*.freeze`` for every expert of the trial).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from eaglesearch.spec.base import SpecModel, repeated
from eaglesearch.spec.declared import DeclaredTrial, NothingToRun
from eaglesearch.spec.model import ExpertSpec
from eaglesearch.spec.yaml_source import Loc

EXPERTS = "experts"
ANY_EXPERT = "*"
Point = dict[str, Any]


def _as_expert(ref: str | ExpertSpec) -> ExpertSpec:
    return ExpertSpec(name=ref) if isinstance(ref, str) else ref


class ParamSpec(SpecModel):
    """One sampled value: ``choices`` (categorical), or a range ``low``..``high`` (int or float, ``log`` scale,
    optional ``step``). ``type`` defaults to categorical with choices, int when both bounds are integers, else
    float; write ``0.0`` rather than ``0`` for a float range."""

    choices: tuple[Any, ...] | None = Field(default=None, min_length=1)
    low: int | float | None = None
    high: int | float | None = None
    log: bool = Field(default=False, description="sample the range on a log scale (learning rates)")
    step: int | float | None = Field(default=None, gt=0, description="grid step of a range (not with log)")
    type: Literal["categorical", "int", "float"] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("give either choices or a range (low/high/log/step), not both")
            if self.type not in (None, "categorical"):
                raise ValueError(f"type '{self.type}' needs low/high instead of choices")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give choices: [...] or a range with both low and high")
        if self.type == "categorical":
            raise ValueError("type 'categorical' needs choices: [...]")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("step and log cannot be combined (Optuna samples log ranges continuously)")
        if self.kind == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError("an int range needs whole-number low and high")
        return self

    @property
    def kind(self) -> Literal["categorical", "int", "float"]:
        if self.type is not None:
            return self.type
        if self.choices is not None:
            return "categorical"
        both_int = isinstance(self.low, int) and isinstance(self.high, int)
        return "int" if both_int and not isinstance(self.step, float) else "float"

    def corners(self) -> list[Any]:
        """The values a load-time check builds a trial with: every choice, or both ends of the range."""
        if self.choices is not None:
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]


class ExpertSearchSpec(SpecModel):
    """Which experts a trial uses: ``base`` always (first), plus a subset of ``pool`` (each expert in or out, the
    subset's size within ``min_size``..``max_size``), or one of the listed ``sets``."""

    base: tuple[str | ExpertSpec, ...] = Field(default=(), description="experts in every trial, first")
    pool: tuple[str | ExpertSpec, ...] = Field(default=(), description="experts each trial may add")
    min_size: int = Field(default=1, ge=0, description="fewest pool experts a trial adds")
    max_size: int | None = Field(default=None, ge=1, description="most pool experts a trial adds; default: all")
    sets: tuple[tuple[str | ExpertSpec, ...], ...] = Field(
        default=(), description="alternatively: the expert sets to choose from (categorical)")

    @model_validator(mode="after")
    def _check(self) -> ExpertSearchSpec:
        if bool(self.pool) == bool(self.sets):
            raise ValueError("give either pool (choose a subset) or sets (choose one of them)")
        if self.sets:
            if self.base:
                raise ValueError("base applies to pool only; put the base experts into each of the sets")
            for i, s in enumerate(self.sets):
                if not s:
                    raise ValueError(f"sets[{i}] is empty; every set needs at least one expert")
                dupes = repeated([_as_expert(e).name for e in s])
                if dupes:
                    raise ValueError(f"sets[{i}] lists {', '.join(dupes)} twice")
            return self
        names = [_as_expert(e).name for e in (*self.base, *self.pool)]
        dupes = repeated(names)
        if dupes:
            raise ValueError(f"experts listed twice across base and pool: {', '.join(dupes)}")
        top = len(self.pool) if self.max_size is None else self.max_size
        if self.max_size is not None and self.max_size > len(self.pool):
            raise ValueError(f"max_size {self.max_size} exceeds the pool's {len(self.pool)} experts")
        if self.min_size > top:
            raise ValueError(f"min_size {self.min_size} exceeds max_size {top}")
        if not self.base and self.min_size == 0:
            raise ValueError("min_size 0 without base experts allows a trial with no expert; use min_size >= 1")
        return self

    @property
    def base_experts(self) -> tuple[ExpertSpec, ...]:
        return tuple(_as_expert(e) for e in self.base)

    @property
    def pool_experts(self) -> tuple[ExpertSpec, ...]:
        return tuple(_as_expert(e) for e in self.pool)

    @property
    def expert_sets(self) -> tuple[tuple[ExpertSpec, ...], ...]:
        return tuple(tuple(_as_expert(e) for e in s) for s in self.sets)

    @property
    def upper(self) -> int:
        return len(self.pool) if self.max_size is None else self.max_size

    def names(self) -> set[str]:
        """Every expert name a trial can contain."""
        found = {e.name for e in (*self.base_experts, *self.pool_experts)}
        return found | {e.name for s in self.expert_sets for e in s}

    def size_ok(self, experts: tuple[ExpertSpec, ...]) -> bool:
        """Whether a pool choice adds between min_size and max_size experts (always true for sets)."""
        if self.sets:
            return True
        return self.min_size <= len(experts) - len(self.base) <= self.upper

    def corners(self) -> list[tuple[ExpertSpec, ...]]:
        """The sets a load-time check builds: every listed set; or base + each pool expert alone and the largest."""
        if self.sets:
            return list(self.expert_sets)
        base, pool = self.base_experts, self.pool_experts
        out = [(*base, e) for e in pool] if self.min_size <= 1 <= self.upper else []
        out.append((*base, *pool[: self.upper]))
        if self.min_size == 0:
            out.insert(0, base)
        return out


class ObjectiveSpec(SpecModel):
    metric: str = Field(description="a recorded metric, e.g. cost/vision_gflops, train/wall_s, score/count")
    mode: Literal["max", "min"] = "min"


class OptunaStrategySpec(SpecModel):
    """Sample ``n_trials`` trials with Optuna: TPE (one objective, or two with ``cost``) or NSGA-II (two
    objectives: ``objective`` against ``cost``, reported as a Pareto front)."""

    kind: Literal["optuna"]
    sampler: Literal["tpe", "nsga2"] = "tpe"
    n_trials: int = Field(gt=0, description="distinct trials to run (duplicates and excluded proposals are free)")
    seed: int = Field(default=0, description="sampler seed: the same seed and results give the same proposals")
    experts: ExpertSearchSpec | None = Field(default=None, description="expert sets; default: the recipe's experts")
    params: dict[str, ParamSpec] = Field(default_factory=dict, description="dotted trial path → how it is sampled")
    exclude: tuple[dict[str, Any], ...] = Field(
        default=(), description="combinations never run (grid-style: every named parameter equals the value)")
    objective: str = "objective"
    mode: Literal["max", "min"] = "max"
    cost: ObjectiveSpec | None = Field(default=None, description="second objective (required for nsga2)")
    batch_size: int | None = Field(
        default=None, ge=1,
        description="proposals sampled together and finished before the next are sampled; default: "
        "resources.max_concurrent_trials (so every worker is busy and proposals do not depend on timing)")
    startup_trials: int = Field(default=10, ge=1, description="TPE: random proposals before the model is used")
    population_size: int = Field(default=50, ge=2, description="NSGA-II: trials per generation")
    max_asks: int | None = Field(
        default=None, ge=1,
        description="study trials (excluded and duplicate proposals included) before the search gives up on "
        "finding new ones; default: 20 x n_trials")

    @model_validator(mode="after")
    def _check(self) -> OptunaStrategySpec:
        if self.sampler == "nsga2" and self.cost is None:
            raise ValueError("sampler nsga2 optimizes two objectives; add cost: {metric: cost/vision_gflops, "
                             "mode: min} (or train/wall_s, ...)")
        if self.experts is None and not self.params:
            raise ValueError("nothing to search: give experts and/or params")
        known = set(self.experts.names()) if self.experts is not None else None
        for path in self.params:
            if path == EXPERTS or path.startswith("model.experts"):
                raise ValueError(f"params.{path}: choose experts with the strategy's experts field (pool or sets)")
            if path.startswith(EXPERTS + "."):
                parts = path.split(".")
                if len(parts) != 3:
                    raise ValueError(f"params.{path}: an expert field is experts.<name>.<field> or "
                                     "experts.*.<field>")
                _, name, field = parts
                allowed = sorted(set(ExpertSpec.model_fields) - {"name"})
                if field not in allowed:
                    raise ValueError(f"params.{path}: '{field}' is not an expert field; one of: {', '.join(allowed)}")
                if name != ANY_EXPERT and known is not None and name not in known:
                    raise ValueError(f"params.{path}: no trial includes expert '{name}' "
                                     f"(experts: {', '.join(sorted(known))})")
        names = set(self.params) | ({EXPERTS} if self.experts is not None else set())
        for i, rule in enumerate(self.exclude):
            unknown = sorted(set(rule) - names)
            if unknown:
                raise ValueError(f"exclude[{i}] names {', '.join(unknown)}, which are not searched "
                                 f"(searched: {', '.join(sorted(names))})")
        return self

    @property
    def asks_limit(self) -> int:
        return self.max_asks if self.max_asks is not None else 20 * self.n_trials

    def feasible(self, point: Point) -> str | None:
        """Why a sampled point may not run (expert-set size or an ``exclude`` rule), or None."""
        if self.experts is not None and not self.experts.size_ok(point[EXPERTS]):
            added = len(point[EXPERTS]) - len(self.experts.base)
            return (f"adds {added} pool experts; allowed {self.experts.min_size}..{self.experts.upper} "
                    "(strategy.experts min_size/max_size)")
        for i, rule in enumerate(self.exclude):
            if all(_equal(point.get(k), v, k) for k, v in rule.items()):
                return f"matches exclude[{i}]"
        return None

    def assignments(self, point: Point, recipe_experts: list[dict[str, Any]]) -> dict[str, Any]:
        """The TrialFactory assignments of a sampled point: dotted paths as sampled, and the expert list (the
        point's or the recipe's) with the per-expert fields applied (``experts.*`` first, named ones win)."""
        out: dict[str, Any] = {}
        expert_fields = {k: v for k, v in point.items() if k.startswith(EXPERTS + ".")}
        if EXPERTS in point:
            experts = [e.model_dump(mode="json", exclude_defaults=True) | {"name": e.name} for e in point[EXPERTS]]
        elif expert_fields:
            experts = [dict(e) for e in recipe_experts]
        else:
            experts = None
        if experts is not None:
            for scope in (ANY_EXPERT, None):
                for path, value in expert_fields.items():
                    _, name, field = path.split(".")
                    for e in experts:
                        if (scope == ANY_EXPERT and name == ANY_EXPERT) or (scope is None and name == e["name"]):
                            e[field] = value
            out[EXPERTS] = experts
        for path, value in point.items():
            if path != EXPERTS and path not in expert_fields:
                out[path] = value
        return out

    def corner_points(self) -> list[Point]:
        """Sampled points a load-time check builds: the first corner of everything, then each parameter's and
        each expert set's corners one at a time (infeasible ones left out)."""
        firsts: Point = {p: spec.corners()[0] for p, spec in self.params.items()}
        sets = self.experts.corners() if self.experts is not None else []
        if sets:
            firsts[EXPERTS] = sets[0]
        points = [firsts]
        points += [{**firsts, EXPERTS: s} for s in sets[1:]]
        for p, spec in self.params.items():
            points += [{**firsts, p: v} for v in spec.corners()[1:]]
        return [p for p in points if self.feasible(p) is None]

    def declared_trials(self, recipe_experts: list[dict[str, Any]]) -> list[DeclaredTrial]:
        """The corner trials (:meth:`corner_points`), each reported at the parameter (or ``experts``) that makes
        it a corner; combinations of valid corners that still fail are skipped by the search at run time.
        ``NothingToRun`` when ``exclude`` and the expert-set sizes leave no corner."""
        points = self.corner_points()
        if not points:
            raise NothingToRun(("strategy", "exclude"), "every corner of the Optuna space is excluded; check exclude "
                               "and experts.min_size/max_size")
        out = []
        for point in points:
            changed = [p for p in point if point[p] != points[0].get(p)] or list(point)
            entry: Loc = ("strategy", "experts") if changed[0] == EXPERTS else ("strategy", "params", changed[0])
            out.append(DeclaredTrial(entry=entry, assignments=self.assignments(point, recipe_experts)))
        return out


def _equal(value: Any, wanted: Any, name: str) -> bool:
    if name == EXPERTS:
        names = [e if isinstance(e, str) else e.get("name") if isinstance(e, dict) else None for e in wanted]
        return value is not None and sorted(e.name for e in value) == sorted(str(n) for n in names)
    if isinstance(value, float) and isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        return math.isclose(value, float(wanted), rel_tol=1e-12)
    return bool(value == wanted)
