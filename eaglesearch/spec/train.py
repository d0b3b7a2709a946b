"""How a trial trains: one supervised fine-tuning stage."""

from __future__ import annotations

from pydantic import Field

from eaglesearch.spec.base import SpecModel


class TrainSpec(SpecModel):
    steps: int = Field(default=150, gt=0)
    batch_size: int = Field(default=16, gt=0)
    lr: float = Field(default=5e-4, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_ratio: float = Field(default=0.05, ge=0, le=1)
    grad_clip: float = Field(default=1.0, gt=0)
    log_every: int = Field(default=10, gt=0, description="steps between logged losses (not part of the trial key)")
    checkpoint_every: int = Field(
        default=50, ge=0,
        description="steps between in-trial checkpoints (0: only at the end of the stage); not part of the trial key")
