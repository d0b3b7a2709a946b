"""Learning-rate schedule: linear warmup, then cosine decay to zero."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) for LambdaLR."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))
