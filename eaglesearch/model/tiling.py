"""Tiling, the LLaVA-NeXT-style resolution strategy for ViT experts (Eagle §2.2, reference/eagle.md §3).

Instead of resizing the whole image to a higher resolution (``resize: interpolate``, position embeddings
interpolated), a :class:`TiledExpert` keeps its ViT at ``resolution`` and encodes ``1 + tiles²`` views of each image:
one global view (the whole image resized to ``resolution``, exactly what the untiled expert sees) and the
``tiles × tiles`` crops of the image, each resized to ``resolution``, in row-major order. All views of a batch run
through the wrapped expert as one batch.

Token count: every view is brought to the common ``grid × grid`` grid on its own, so one image gives
``(1 + tiles²) · grid²`` tokens of the wrapped expert's grid width — e.g. 2×2 tiles on Eagle's 32×32 grid give
5 · 1024 = 5120 tokens, on the tiny 8×8 grid 5 · 64 = 320. Channel concatenation with untiled experts (grid² tokens)
therefore needs a fusion that handles the longer sequence (sequence append).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from eaglesearch.model.experts.base import VisionExpert
from eaglesearch.model.resample import to_grid


class TiledExpert(VisionExpert):
    """A ViT expert applied to a global view plus ``tiles × tiles`` crops; tokens: global view first, then tiles."""

    def __init__(self, expert: VisionExpert, tiles: int) -> None:
        if not expert.is_vit:
            raise TypeError(f"expert '{expert.name}' ({type(expert).__name__}) cannot be tiled: tiling is for plain "
                            "ViT experts (clip, siglip, dinov2, eva02); use `resize: interpolate` instead")
        if tiles < 1:
            raise ValueError(f"tiles must be at least 1; got {tiles}")
        super().__init__(expert.name, expert.resolution, expert.channels, expert.native_grid, (0.0, 0.0, 0.0),
                         (1.0, 1.0, 1.0), expert.resample)
        self.mean, self.std = expert.mean, expert.std  # the wrapped expert's normalisation (shared buffers)
        self.expert = expert
        self.tiles = tiles

    @property
    def num_views(self) -> int:
        """Views per image: the global view and ``tiles²`` crops."""
        return 1 + self.tiles**2

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8 (B,3,H,W) → normalised views (B, 1 + tiles², 3, R, R): global view, then crops row-major."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expert '{self.name}' expects images shaped (B,3,H,W); got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h < self.tiles or w < self.tiles:
            raise ValueError(f"expert '{self.name}': a {h}×{w} image cannot be cut into {self.tiles}×{self.tiles} "
                             "tiles; use fewer tiles or larger images")
        rows = [round(i * h / self.tiles) for i in range(self.tiles + 1)]
        cols = [round(j * w / self.tiles) for j in range(self.tiles + 1)]
        views = [self.expert.preprocess(images)]
        for i in range(self.tiles):
            for j in range(self.tiles):
                crop = images[:, :, rows[i]:rows[i + 1], cols[j]:cols[j + 1]]
                views.append(self.expert.preprocess(crop))
        return torch.stack(views, dim=1)

    def forward(self, pixels: Tensor) -> Tensor:
        """Normalised views (B, V, 3, R, R) → per-view feature maps (B, V, channels, native_grid, native_grid)."""
        if pixels.dim() != 5 or pixels.shape[1] != self.num_views:
            raise ValueError(f"tiled expert '{self.name}' expects views shaped (B, {self.num_views}, 3, R, R) from "
                             f"its preprocess; got {tuple(pixels.shape)}")
        maps = self.expert(pixels.flatten(0, 1))
        return maps.unflatten(0, (pixels.shape[0], self.num_views))

    def tokens(self, pixels_or_images: Tensor, grid: int) -> Tensor:
        """uint8 images (B,3,H,W) or preprocessed views (B,V,3,R,R) → (B, (1 + tiles²)·grid², C') tokens."""
        views = self.preprocess(pixels_or_images) if pixels_or_images.dim() == 4 else pixels_or_images
        maps = self(views)
        batch = maps.shape[0]
        tokens = to_grid(maps.flatten(0, 1), grid, self.resample)
        return tokens.reshape(batch, self.num_views * grid * grid, tokens.shape[-1])

    def grid_tokens(self, images: Tensor, grid: int) -> Tensor:
        return self.tokens(images, grid)

    def token_count(self, grid: int) -> int:
        """``(1 + tiles²) · grid²``: every view on its own common grid."""
        return self.num_views * grid * grid

    def freezable_blocks(self) -> list[nn.Module]:
        return self.expert.freezable_blocks()

    def post_block_modules(self) -> list[nn.Module]:
        return self.expert.post_block_modules()

    def extra_repr(self) -> str:
        return f"tiles={self.tiles}, num_views={self.num_views}, frozen={self.frozen}"
