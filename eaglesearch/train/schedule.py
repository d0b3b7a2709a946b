"""Learning-rate schedules: linear warmup, then cosine or linear decay to zero, or a constant rate."""

from __future__ import annotations

import math
from typing import Literal

ScheduleKind = Literal["cosine", "linear", "constant"]


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, kind: ScheduleKind = "cosine") -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) for LambdaLR.

    Warmup rises linearly to 1 over ``warmup_steps`` steps; after it ``cosine`` and ``linear`` decay to zero at
    ``total_steps`` and ``constant`` stays at 1.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "linear":
        return 1.0 - progress
    raise ValueError(f"unknown learning-rate schedule {kind!r}; use cosine, linear or constant")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warmup then cosine decay to zero: ``lr_multiplier(..., "cosine")``."""
    return lr_multiplier(step, total_steps, warmup_steps, "cosine")
