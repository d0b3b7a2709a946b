"""What a fusion strategy is, and how it reads an ordinary expert's tokens on the common grid.

A :class:`Fusion` turns uint8 images into one sequence of visual tokens, running the experts itself: channel
concatenation and sequence append only need each expert's tokens on the common grid (:func:`expert_tokens`, i.e.
``VisionExpert.grid_tokens``, which also handles tiled experts), while the injection strategies (LLaVA-HR,
Mini-Gemini, deformable attention) need the experts' raw feature maps or even the ViT blocks one by one. The experts stay owned by :class:`~eaglesearch.model.eagle.EagleModel`: a fusion gets
them as an argument of ``forward`` and never registers them, so their parameters are counted once.

Every fusion is built as ``cls(spec, experts, lm_dim)`` and declares up front how many tokens it makes
(``num_tokens``), how wide they are (``out_dim``) and whether it already maps them to the LM width
(``owns_projection``; then the model's shared projector is the identity).

Every fusion reads an expert's features only through :meth:`Fusion.tokens` (grid tokens) or :meth:`Fusion.map`
(native feature map), which apply that expert's ``spec.fusion_norm`` (``norm.py``) first; :meth:`Fusion.norm_widths`
says which width each expert's norm is built for (the grid-token width unless a fusion reads maps).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from eaglesearch.model.experts.base import VisionExpert
from eaglesearch.model.fusions.catalog import FusionKind
from eaglesearch.model.fusions.maps import expert_map
from eaglesearch.model.fusions.norm import ExpertNorms
from eaglesearch.spec import ModelSpec


def expert_tokens(expert: VisionExpert, images: Tensor, grid: int) -> Tensor:
    """uint8 images (B,3,S,S) → the expert's tokens on the common grid, (B, grid², C'), resampled the way its preset
    declares — or, for a tiled expert, (B, (1 + tiles²)·grid², C')."""
    return expert.grid_tokens(images, grid)


def token_width(expert: VisionExpert, grid: int) -> int:
    """C', the width of one of the expert's grid tokens (its channels, ×k² when pixel-unshuffled onto the grid)."""
    return expert.grid_channels(grid)


class Fusion(nn.Module, ABC):
    """Experts + uint8 images → (B, ``num_tokens``, ``out_dim``) visual tokens on a ``grid`` × ``grid`` grid.

    Subclasses are built as ``cls(spec, experts, lm_dim)``; after ``super().__init__`` they set ``num_tokens`` and
    ``out_dim`` and create their layers. They read expert features through :meth:`tokens` / :meth:`map` only, so
    the per-expert norm (``self.norm``) applies to every fusion.
    """

    kind: ClassVar[FusionKind]  # its declaration in catalog.py: constraints and token rule, read without torch
    owns_projection: ClassVar[bool] = False
    num_tokens: int  # visual tokens per image
    out_dim: int  # width of a fused token (lm_dim when owns_projection)

    def __init__(self, spec: ModelSpec, experts: Sequence[VisionExpert], lm_dim: int) -> None:
        super().__init__()
        if len(experts) != len(spec.experts):
            raise ValueError(f"fusion '{spec.fusion}' was given {len(experts)} experts for a spec with "
                             f"{len(spec.experts)} ({spec.label}); pass the experts built from spec.experts, in order")
        if lm_dim <= 0:
            raise ValueError(f"the language model width must be positive; got {lm_dim}")
        self.grid = spec.grid
        self.num_experts = len(experts)
        self.norm = ExpertNorms(spec.fusion_norm, self.norm_widths(spec, experts))

    def norm_widths(self, spec: ModelSpec, experts: Sequence[VisionExpert]) -> list[int]:
        """The channel width each expert's norm is built for: its grid-token width (C', ×k² when pixel-unshuffled);
        fusions that read an expert's native map override this with ``expert.channels`` for it."""
        return [token_width(e, spec.grid) for e in experts]

    def tokens(self, experts: Sequence[VisionExpert], index: int, images: Tensor) -> Tensor:
        """Expert ``index``'s tokens on the common grid (:func:`expert_tokens`), normalised by its fusion norm."""
        return self.norm.tokens(index, expert_tokens(experts[index], images, self.grid))

    def map(self, experts: Sequence[VisionExpert], index: int, images: Tensor) -> Tensor:
        """Expert ``index``'s native feature map (B, channels, h, h), normalised by its fusion norm."""
        return self.norm.map(index, expert_map(experts[index], images))

    @abstractmethod
    def fuse(self, experts: Sequence[VisionExpert], images: Tensor) -> Tensor:
        """The fused tokens (B, num_tokens, out_dim) for checked inputs."""

    def forward(self, experts: Sequence[VisionExpert], images: Tensor, grid: int) -> Tensor:
        """Experts in spec order + uint8 images (B,3,S,S) on the grid this fusion was built for → (B, N, D)."""
        if len(experts) != self.num_experts:
            raise ValueError(f"{type(self).__name__} was built for {self.num_experts} experts; got {len(experts)}")
        if grid != self.grid:
            raise ValueError(f"{type(self).__name__} was built for a {self.grid}×{self.grid} grid; got grid {grid} "
                             "— build the model again for another grid")
        return self.fuse(experts, images)

    def extra_repr(self) -> str:
        return f"grid={self.grid}, num_tokens={self.num_tokens}, out_dim={self.out_dim}"
