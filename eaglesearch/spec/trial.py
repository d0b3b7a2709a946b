"""A trial: one fully resolved model + data + training + evaluation, and what came of it."""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from eaglesearch.spec.base import SpecModel
from eaglesearch.spec.data import DataSpec
from eaglesearch.spec.evaluate import EvalSpec
from eaglesearch.spec.keys import canonical_json, content_key
from eaglesearch.spec.model import ModelSpec
from eaglesearch.spec.train import TrainSpec


class TrialSpec(SpecModel):
    """Everything that determines a trial's numbers. Two specs with equal ``key`` are the same experiment.

    A user's encoder travels inside its ``ExpertSpec.custom`` declaration: the worker re-registers it from there, and
    the key changes with it, so two different encoders declared under one name never share a result."""

    model: ModelSpec
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    seed: int = 0
    budget: float | None = Field(
        default=None, gt=0, le=1,
        description="multi-fidelity rung: train the final stage only to this fraction of its steps (its LR "
        "schedule stays the full stage's, the rung just stops early), then evaluate; None (or 1) is the full trial")

    @field_validator("budget")
    @classmethod
    def _full_is_none(cls, value: float | None) -> float | None:
        # A budget of 1 is the full trial: the same experiment, so the same key.
        return None if value is not None and value >= 1 else value

    @model_validator(mode="after")
    def _stage_mixtures(self) -> TrialSpec:
        """Every stage trains on a mixture the data declares (or, for ``sft``/``caption``, the generator writes)."""
        for stage in self.train.active:
            if self.data.mixture(stage.data) is not None:
                continue
            if stage.data == "caption":
                raise ValueError(f"stage {stage.name} trains on caption pairs but data.caption is not set; give "
                                 "data.caption: {json_path, image_folder} (LLaVA pre-training json, e.g. "
                                 "blip_laion_cc_sbu_558k.json) or named caption sources")
            raise ValueError(f"stage {stage.name} trains on mixture '{stage.data}', which the data does not declare; "
                             f"mixtures: {', '.join(self.data.mixture_names)} (declare it under data.mixtures)")
        return self

    def canonical_json(self) -> str:
        """Sorted, compact JSON of the semantic fields (no logging cadence, no disabled stage): the input of
        :attr:`key`. ``budget`` is in it only when set: a rung's numbers differ from the full trial's, so it
        needs a key (and a record) of its own, while a full-budget trial keeps the key it had before budgets
        existed, so a successive-halving search and a plain one share their full-budget trials."""
        payload = self.model_dump(mode="json", exclude={"train"} if self.budget is not None else {"train", "budget"})
        payload["data"].pop("num_workers", None)  # where images are decoded never changes a result
        payload["train"] = self.train.semantic()
        return canonical_json(payload)

    @property
    def key(self) -> str:
        return content_key(self.canonical_json(), 16)

    @property
    def full_key(self) -> str:
        """Key of this trial at the full budget (its own key when ``budget`` is None). Every rung of a candidate
        checkpoints into the full trial's scratch folder, so the next rung, and the full trial, resume from the
        previous rung's last checkpoint instead of training from scratch."""
        return self.key if self.budget is None else self.model_copy(update={"budget": None}).key

    def stop_step(self, steps: int) -> int | None:
        """The step the final stage stops at for a stage of ``steps`` steps: ``ceil(budget * steps)`` (at least
        1), or None for the full trial."""
        if self.budget is None:
            return None
        return min(steps, max(1, math.ceil(self.budget * steps - 1e-9)))

    @property
    def label(self) -> str:
        return self.model.label

    def flat_params(self) -> dict[str, str]:
        """The spec flattened to ``a.b.c -> str`` for MLflow params (experts as ``model.experts`` labels)."""
        out: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)

        data = self.model_dump(mode="json", exclude={"budget"} if self.budget is None else None)
        data["train"] = {s.pop("name"): s for s in data["train"]["stages"]}  # train.<stage>.<field>
        out["train.stages"] = self.train.label
        experts = data["model"].pop("experts")
        out["model.experts"] = self.model.label
        for e in experts:
            for k, v in e.items():
                if k == "custom":  # a declared encoder: model.expert.<name>.custom.factory, ...
                    for field, value in v.items():
                        if field != "name":
                            out[f"model.expert.{e['name']}.custom.{field}"] = (
                                json.dumps(value) if isinstance(value, list) else str(value))
                elif k != "name":
                    out[f"model.expert.{e['name']}.{k}"] = str(v)
        walk("", data)
        return out


TrialStatus = Literal["finished", "failed", "cached", "stopped"]
"""``stopped``: ended early by a scheduler (ASHA) after an intermediate evaluation; recorded, never a winner."""


class TrialResult(SpecModel):
    """What one trial produced. ``metrics`` holds per-benchmark accuracies, ``objective`` and cost figures."""

    key: str
    status: TrialStatus
    objective: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status not in ("failed", "stopped") and self.objective is not None
