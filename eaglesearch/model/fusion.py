"""How the experts' token grids are combined into one sequence of visual tokens.

Only Eagle's winner, channel concatenation (reference/eagle.md §2), is implemented; other strategies (sequence
append, injection) register under their own name in :data:`FUSIONS` and declare how wide their output is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


class Fusion(nn.Module, ABC):
    """Fuses per-expert tokens (B, N, C_i) into one (B, N', D) sequence; ``fused_width`` gives D up front."""

    @abstractmethod
    def fused_width(self, widths: Sequence[int]) -> int:
        """D, the width of a fused token, from the experts' token widths C_i."""

    @abstractmethod
    def forward(self, tokens: Sequence[Tensor]) -> Tensor:
        """Per-expert (B, N, C_i) tokens, in spec order → (B, N', D)."""


class ChannelConcat(Fusion):
    """Concatenate along channels: every expert must give the same number of tokens N; the width is ΣC_i."""

    def fused_width(self, widths: Sequence[int]) -> int:
        return sum(widths)

    def forward(self, tokens: Sequence[Tensor]) -> Tensor:
        if not tokens:
            raise ValueError("channel_concat needs at least one expert's tokens")
        counts = [t.shape[1] for t in tokens]
        if len(set(counts)) != 1:
            raise ValueError(f"channel_concat needs the same number of tokens from every expert; got {counts} — "
                             "resample every expert to the same grid (eaglesearch.model.resample.to_grid)")
        return torch.cat(list(tokens), dim=-1)


FUSIONS: dict[str, Callable[[], Fusion]] = {"channel_concat": ChannelConcat}


def build_fusion(name: str) -> Fusion:
    """The fusion registered as ``name``."""
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion '{name}'; available: {', '.join(sorted(FUSIONS))}")
    return FUSIONS[name]()
