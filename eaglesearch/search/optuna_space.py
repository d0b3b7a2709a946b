"""Between a declared Optuna space (``spec.optuna_space``) and Optuna itself: samplers, and sampling one point.

The sampled point is the spec's ``Point`` (see :mod:`eaglesearch.spec.optuna_space`). Every parameter is sampled
on every trial, also a per-expert field of an expert the trial does not use: the search space stays static, which
multivariate TPE needs, and the trial key only depends on the values that apply (two points differing only in an
unused value are the same trial, answered once).
"""

from __future__ import annotations

import json
from typing import Any

import optuna

from eaglesearch.spec import ExpertSpec, OptunaStrategySpec, ParamSpec
from eaglesearch.spec.optuna_space import EXPERTS, Point

PRIMITIVE = (type(None), bool, int, float, str)
SET_SEPARATOR = "+"


def make_sampler(spec: OptunaStrategySpec, seed: int) -> optuna.samplers.BaseSampler:
    """The declared sampler with its settings spelled out (defaults differ between Optuna 4 and 5)."""
    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=spec.population_size, seed=seed)
    multi = spec.cost is not None
    return optuna.samplers.TPESampler(
        n_startup_trials=spec.startup_trials, seed=seed, multivariate=not multi, constant_liar=True,
    )


def directions(spec: OptunaStrategySpec) -> list[str]:
    modes = [spec.mode] + ([spec.cost.mode] if spec.cost is not None else [])
    return ["maximize" if m == "max" else "minimize" for m in modes]


def _choice_names(choices: tuple[Any, ...]) -> list[Any]:
    """Optuna stores only None/bool/int/float/str choices: others (lists, mappings) go in as their JSON text."""
    if all(isinstance(c, PRIMITIVE) for c in choices):
        return list(choices)
    return [json.dumps(c, sort_keys=True, separators=(",", ":")) for c in choices]


def _suggest(trial: optuna.Trial, name: str, spec: ParamSpec) -> Any:
    if spec.choices is not None:
        names = _choice_names(spec.choices)
        picked = trial.suggest_categorical(name, names)
        return spec.choices[names.index(picked)]
    assert spec.low is not None and spec.high is not None
    if spec.kind == "int":
        step = int(spec.step) if spec.step is not None else 1
        return trial.suggest_int(name, int(spec.low), int(spec.high), step=step, log=spec.log)
    return trial.suggest_float(name, float(spec.low), float(spec.high), step=spec.step, log=spec.log)


def _set_name(experts: tuple[ExpertSpec, ...]) -> str:
    return SET_SEPARATOR.join(e.label for e in experts)


def sample_point(trial: optuna.Trial, spec: OptunaStrategySpec) -> Point:
    """One point of the declared space, drawn through ``trial`` (experts first, then ``params`` in order)."""
    point: Point = {}
    experts = spec.experts
    if experts is not None:
        if experts.sets:
            names = [_set_name(s) for s in experts.expert_sets]
            point[EXPERTS] = experts.expert_sets[names.index(trial.suggest_categorical(EXPERTS, names))]
        else:
            chosen = [e for e in experts.pool_experts if trial.suggest_categorical(f"{EXPERTS}:{e.name}", [False, True])]
            point[EXPERTS] = (*experts.base_experts, *chosen)
    for name, param in spec.params.items():
        point[name] = _suggest(trial, name, param)
    return point

