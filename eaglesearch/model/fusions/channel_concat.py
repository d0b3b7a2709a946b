"""Channel concatenation (Eagle's choice, reference/eagle.md §1.4): every expert's grid tokens side by side.

Each expert is brought to the common grid (bilinear or pixel-unshuffle, :func:`~eaglesearch.model.resample.to_grid`)
and the token vectors are concatenated: N = grid² tokens of width ΣC'_i, then one shared projector. With a single
expert this is that expert's tokens; a single tiled expert gives (1 + tiles²)·grid² tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from eaglesearch.model.experts.base import VisionExpert
from eaglesearch.model.fusions.base import Fusion, expert_tokens, token_width
from eaglesearch.model.fusions.rules import CHANNEL_CONCAT
from eaglesearch.spec import ModelSpec


class ChannelConcat(Fusion):
    """(B, N, ΣC'_i): the experts' grid tokens concatenated along channels; the shared projector follows."""

    rules = CHANNEL_CONCAT

    def __init__(self, spec: ModelSpec, experts: Sequence[VisionExpert], lm_dim: int) -> None:
        counts = {e.token_count(spec.grid) for e in experts}
        if len(counts) != 1:
            raise ValueError(f"channel_concat needs the same number of tokens from every expert; {spec.label} gives "
                             f"{sorted(counts)} (tiled and untiled experts mixed) — use fusion sequence_append, or "
                             "tile only a single expert")
        super().__init__(spec, experts, lm_dim)
        self.num_tokens = counts.pop()
        self.out_dim = sum(token_width(e, spec.grid) for e in experts)

    def fuse(self, experts: Sequence[VisionExpert], images: Tensor) -> Tensor:
        tokens = [expert_tokens(e, images, self.grid) for e in experts]
        counts = [t.shape[1] for t in tokens]
        if len(set(counts)) != 1:
            raise ValueError(f"channel_concat needs the same number of tokens from every expert; got {counts}")
        return torch.cat(tokens, dim=-1)
