"""Mini-Gemini patch-info mining (MGM ``unified_resampler``, reference/eagle.md §2).

The first expert's tokens on the common grid are the low-resolution queries, Q = LN+Linear(tokens). The other
experts' maps are resized (bilinear) to a common high-resolution side ``p·grid`` — p is the largest auxiliary native
side // grid, at least 2 — concatenated on channels and cut into the grid² co-located p×p windows;
K = LN+Linear(aux) and V = LN+Linear(aux), both to the query width. Each query attends, with ``fusion_heads``
heads, only over the p² pixels of its own window; the result goes through an output projection and is added to the
query tokens. MGM itself uses one head and no output projection; N = grid², out_dim = query width, then the shared
projector.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from eaglesearch.model.experts.base import VisionExpert
from eaglesearch.model.fusions.base import Fusion, expert_tokens
from eaglesearch.model.fusions.injection import QueryAuxSplit, check_heads
from eaglesearch.model.fusions.maps import concat_maps, expert_map, windows
from eaglesearch.model.fusions.rules import MINI_GEMINI
from eaglesearch.spec import ModelSpec


class MiniGemini(Fusion):
    """(B, grid², C_q): query tokens + out_proj(window attention over the high-resolution auxiliary map)."""

    rules = MINI_GEMINI

    def __init__(self, spec: ModelSpec, experts: Sequence[VisionExpert], lm_dim: int) -> None:
        split = QueryAuxSplit.of(spec, experts)
        width = split.query_width
        check_heads(spec.fusion, width, spec.fusion_heads)
        super().__init__(spec, experts, lm_dim)
        self.num_tokens, self.out_dim = spec.grid**2, width
        self.heads = spec.fusion_heads
        self.window = max(split.aux_side // spec.grid, 2)  # p: the side of each query's window
        self.query = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width))
        self.key = nn.Sequential(nn.LayerNorm(split.aux_width), nn.Linear(split.aux_width, width))
        self.value = nn.Sequential(nn.LayerNorm(split.aux_width), nn.Linear(split.aux_width, width))
        self.out = nn.Linear(width, width)

    def fuse(self, experts: Sequence[VisionExpert], images: Tensor) -> Tensor:
        tokens = expert_tokens(experts[0], images, self.grid)  # (B, N, C)
        aux = concat_maps([expert_map(e, images) for e in experts[1:]], self.grid * self.window)
        return tokens + self.out(self.attend(tokens, windows(aux, self.grid)))

    def attend(self, tokens: Tensor, aux_windows: Tensor) -> Tensor:
        """Query tokens (B,N,C) and their windows (B,N,p²,C_aux) → attended values (B,N,C)."""
        b, n, c = tokens.shape
        h, d = self.heads, c // self.heads
        q = self.query(tokens).view(b, n, h, 1, d)
        k = self.key(aux_windows).view(b, n, -1, h, d).transpose(2, 3)  # (B,N,H,p²,d)
        v = self.value(aux_windows).view(b, n, -1, h, d).transpose(2, 3)
        weights = (q @ k.transpose(-1, -2) * d**-0.5).softmax(dim=-1)  # (B,N,H,1,p²)
        return (weights @ v).reshape(b, n, c)
