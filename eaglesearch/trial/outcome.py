"""What a finished trial hands back to the layer that records it, and the record's vocabulary for its stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eaglesearch.evaluate.predictions import PREDICTIONS, PredictionRecord, write_predictions
from eaglesearch.train.stages import PRETRAIN, StageRecord

__all__ = ["PRETRAIN", "StageRecord", "TrialOutcome"]


@dataclass
class TrialOutcome:
    """Everything a finished trial measured."""

    objective: float
    metrics: dict[str, float]
    loss_history: list[tuple[int, float]] = field(default_factory=list)  # the final stage's logged losses
    predictions: list[PredictionRecord] = field(default_factory=list)
    stages: list[StageRecord] = field(default_factory=list)  # one per stage (per expert for per-expert stages)
    weights: Path | None = None  # the final model's folder (model/saved.py), when the caller asked to keep it

    def write_predictions(self, folder: Path) -> Path:
        """The predictions as ``folder/predictions.jsonl`` (what the record keeps, so the trial can be re-scored)."""
        return write_predictions(Path(folder) / PREDICTIONS, self.predictions)
