"""A trial: one fully resolved model + data + training + evaluation, and what came of it."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field

from eaglesearch.spec.base import SpecModel
from eaglesearch.spec.data import DataSpec
from eaglesearch.spec.evaluate import EvalSpec
from eaglesearch.spec.model import ModelSpec
from eaglesearch.spec.train import TrainSpec

# Fields that change how a trial is logged, not what it computes; they are left out of the key.
NON_SEMANTIC: dict[str, Any] = {"train": {"log_every", "checkpoint_every"}}


class TrialSpec(SpecModel):
    """Everything that determines a trial's numbers. Two specs with equal ``key`` are the same experiment."""

    model: ModelSpec
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    seed: int = 0

    def canonical_json(self) -> str:
        """Sorted, compact JSON of the semantic fields: the input of :attr:`key`."""
        payload = self.model_dump(mode="json", exclude=NON_SEMANTIC)
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))

    @property
    def key(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

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

        data = self.model_dump(mode="json")
        experts = data["model"].pop("experts")
        out["model.experts"] = self.model.label
        for e in experts:
            for k, v in e.items():
                if k != "name":
                    out[f"model.expert.{e['name']}.{k}"] = str(v)
        walk("", data)
        return out


TrialStatus = Literal["finished", "failed", "cached"]


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
        return self.status != "failed" and self.objective is not None
