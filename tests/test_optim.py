"""Optimizer parameter groups: weight decay on matrices only, and the experts' own learning rate (expert_lr)."""

from __future__ import annotations

import pytest
from torch import nn

from eaglesearch.spec import TrialSpec
from eaglesearch.spec.train import StageSpec
from eaglesearch.train import build_optimizer


def _model() -> nn.Module:
    model = nn.Module()
    model.experts = nn.ModuleDict({"clip": nn.Linear(3, 4)})
    model.projector = nn.Linear(4, 5)
    return model


def _lrs(optimizer) -> dict[int, float]:
    return {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}


def test_experts_train_at_expert_lr_and_the_rest_at_lr() -> None:
    model = _model()
    optimizer = build_optimizer(model, StageSpec(name="sft", lr=1e-3, expert_lr=2e-5))
    lrs = _lrs(optimizer)
    assert {lrs[id(p)] for p in model.experts.parameters()} == {2e-5}
    assert {lrs[id(p)] for p in model.projector.parameters()} == {1e-3}
    decays = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decays[id(model.experts["clip"].bias)] == 0.0 and decays[id(model.experts["clip"].weight)] > 0


def test_without_expert_lr_every_parameter_trains_at_lr() -> None:
    model = _model()
    assert set(_lrs(build_optimizer(model, StageSpec(name="sft", lr=3e-4))).values()) == {3e-4}
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        build_optimizer(model, StageSpec(name="sft"))


def test_expert_lr_enters_the_trial_key_only_when_set() -> None:
    model = {"experts": [{"name": "clip"}]}
    plain = TrialSpec.model_validate({"model": model, "train": {"steps": 5}})
    assert "expert_lr" not in str(plain.train.semantic())  # keys published before the field existed still hold
    slower = TrialSpec.model_validate({"model": model, "train": {"steps": 5, "expert_lr": 1e-4}})
    assert slower.key != plain.key
