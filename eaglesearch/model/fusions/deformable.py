"""Deformable attention (the paper's own baseline on top of Mini-Gemini; Deformable-DETR style, eagle.md §2).

Each query — a token of the first expert on the common grid, whose reference point is its own cell centre in
normalised coordinates — predicts, per head, ``fusion_points`` sampling offsets and as many attention weights
(softmax over the points). The other experts' maps, resized (bilinear) to the largest auxiliary native side and
concatenated on channels, are projected to the query width (LN+Linear per pixel) and split into heads; each head
samples its channels at its points with ``F.grid_sample(align_corners=False)``, takes the weighted sum, and an
output projection adds the result to the query tokens (residual).

Zero init: the offsets start at the reference point (offset layer all zeros) and the output projection starts at
zero, so at initialisation the fusion returns the query tokens unchanged (the no-injection model). Offsets are in
units of auxiliary-map pixels. N = grid², out_dim = query width, then the shared projector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eaglesearch.model.experts.base import VisionExpert
from eaglesearch.model.fusions.base import Fusion, expert_tokens
from eaglesearch.model.fusions.injection import QueryAuxSplit, check_heads
from eaglesearch.model.fusions.maps import concat_maps, expert_map
from eaglesearch.model.fusions.rules import DEFORMABLE

if TYPE_CHECKING:
    from eaglesearch.spec import ModelSpec


def reference_points(grid: int, device: torch.device | None = None) -> Tensor:
    """(grid², 2) cell centres (x, y) in [0, 1], row-major like the grid tokens."""
    centres = (torch.arange(grid, dtype=torch.float32, device=device) + 0.5) / grid
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=-1)


class DeformableAttention(Fusion):
    """(B, grid², C_q): query tokens + out_proj(deformable sampling of the high-resolution auxiliary map)."""

    rules = DEFORMABLE

    def __init__(self, spec: ModelSpec, experts: Sequence[VisionExpert], lm_dim: int) -> None:
        split = QueryAuxSplit.of(spec, experts)
        width = split.query_width
        check_heads(spec.fusion, width, spec.fusion_heads)
        super().__init__(spec, experts, lm_dim)
        self.num_tokens, self.out_dim = spec.grid**2, width
        self.heads, self.points = spec.fusion_heads, spec.fusion_points
        self.aux_side = split.aux_side
        self.query = nn.LayerNorm(width)
        self.offsets = nn.Linear(width, self.heads * self.points * 2)
        self.weights = nn.Linear(width, self.heads * self.points)
        self.value = nn.Sequential(nn.LayerNorm(split.aux_width), nn.Linear(split.aux_width, width))
        self.out = nn.Linear(width, width)
        for layer in (self.offsets, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.register_buffer("reference", reference_points(spec.grid), persistent=False)

    def fuse(self, experts: Sequence[VisionExpert], images: Tensor) -> Tensor:
        tokens = expert_tokens(experts[0], images, self.grid)  # (B, N, C)
        aux = concat_maps([expert_map(e, images) for e in experts[1:]], self.aux_side)
        return tokens + self.out(self.sample(tokens, aux))

    def sample(self, tokens: Tensor, aux: Tensor) -> Tensor:
        """Query tokens (B,N,C) and the auxiliary map (B,C_aux,s,s) → sampled values (B,N,C)."""
        b, n, c = tokens.shape
        h, k, d, side = self.heads, self.points, c // self.heads, aux.shape[-1]
        value = self.value(aux.flatten(2).transpose(1, 2))  # (B, s², C)
        value = value.transpose(1, 2).reshape(b * h, d, side, side)
        q = self.query(tokens)
        offsets = self.offsets(q).view(b, n, h, k, 2) / side  # aux pixels → [0, 1] units
        where = self.reference.to(q.dtype).view(1, n, 1, 1, 2) + offsets  # (B,N,H,K,2) in [0, 1]
        where = (2 * where - 1).permute(0, 2, 1, 3, 4).reshape(b * h, n, k, 2)  # grid_sample's [-1, 1]
        sampled = F.grid_sample(value, where, mode="bilinear", padding_mode="zeros", align_corners=False)
        weights = self.weights(q).view(b, n, h, k).softmax(dim=-1)  # (B,N,H,K)
        weights = weights.permute(0, 2, 1, 3).reshape(b * h, 1, n, k)
        attended = (sampled * weights).sum(dim=-1)  # (B·H, d, N)
        return attended.view(b, h * d, n).transpose(1, 2)
