"""Sequence append (reference/eagle.md §2): each expert's tokens get their own projector, then follow each other.

Every expert is brought to the common grid and mapped by its own ``mlp2x_gelu`` (the recipe's projector) to the
LM width; the projected token sequences are concatenated in spec order, so N = Σ tokens (grid² per ordinary
expert, (1 + tiles²)·grid² per tiled one). The paper does not say how it projected appended tokens; a projector per
expert is what the reference suggests. The fusion owns the projection: the model's shared projector is identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from eaglesearch.model.experts.base import VisionExpert
from eaglesearch.model.fusions.base import Fusion, expert_tokens, token_width
from eaglesearch.model.fusions.rules import SEQUENCE_APPEND
from eaglesearch.model.projector import build_projector
from eaglesearch.spec import ModelSpec


class SequenceAppend(Fusion):
    """(B, Σ N_i, lm_dim): per-expert projectors (``projectors[<expert name>]``), outputs appended in spec order."""

    rules = SEQUENCE_APPEND

    owns_projection: ClassVar[bool] = True

    def __init__(self, spec: ModelSpec, experts: Sequence[VisionExpert], lm_dim: int) -> None:
        grid = spec.grid
        super().__init__(spec, experts, lm_dim)
        self.num_tokens = sum(e.token_count(grid) for e in experts)
        self.out_dim = lm_dim
        self.projectors = nn.ModuleDict({
            e.name: build_projector(spec.projector, token_width(e, grid), lm_dim) for e in experts
        })

    def fuse(self, experts: Sequence[VisionExpert], images: Tensor) -> Tensor:
        return torch.cat([self.projectors[e.name](expert_tokens(e, images, self.grid)) for e in experts], dim=1)
