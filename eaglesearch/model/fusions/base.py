"""What a fusion strategy is, and how it reads an ordinary expert's tokens on the common grid.

A :class:`Fusion` turns uint8 images into one sequence of visual tokens, running the experts itself: channel
concatenation and sequence append only need each expert's tokens on the common grid (:func:`expert_tokens`, i.e.
``VisionExpert.grid_tokens``, which also handles tiled experts), while the injection strategies (LLaVA-HR,
Mini-Gemini, deformable attention) need the experts' raw feature maps or even the ViT blocks one by one. The experts stay owned by :class:`~eaglesearch.model.eagle.EagleModel`: a fusion gets
them as an argument of ``forward`` and never registers them, so their parameters are counted once.

Every fusion is built as ``cls(spec, experts, lm_dim)`` and declares up front how many tokens it makes
(``num_tokens``), how wide they are (``out_dim``) and whether it already maps them to the LM width
(``owns_projection``; then the model's shared projector is the identity). What it asks of its experts is its
``rules``, a torch-free descriptor (``rules.py``) that ``validate`` checks without building anything.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from eaglesearch.model.experts.base import VisionExpert
from eaglesearch.model.fusions.rules import FusionRules
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
    ``out_dim`` and create their layers.
    """

    rules: ClassVar[FusionRules]  # what it asks of its experts, checked before building (``rules.py``, torch-free)
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
