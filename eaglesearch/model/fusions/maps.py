"""Feature-map helpers shared by the injection fusions: run an expert to its map, resize, concatenate, window."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from eaglesearch.model.experts.base import VisionExpert


def expert_map(expert: VisionExpert, images: Tensor) -> Tensor:
    """uint8 images (B,3,S,S) → the expert's native feature map (B, channels, native_grid, native_grid)."""
    return expert.feature_map(images)


def resize_bilinear(features: Tensor, side: int) -> Tensor:
    """(B,C,h,w) → (B,C,side,side), bilinear with ``align_corners=True`` (as Eagle's to-grid step)."""
    if tuple(features.shape[-2:]) == (side, side):
        return features
    return F.interpolate(features, size=(side, side), mode="bilinear", align_corners=True)


def pool_or_upsample(features: Tensor, side: int) -> Tensor:
    """(B,C,h,w) → (B,C,side,side) as LLaVA-HR aligns its branches: average-pool a larger map, bilinearly
    upsample a smaller one."""
    h, w = features.shape[-2:]
    if (h, w) == (side, side):
        return features
    if h >= side and w >= side:
        return F.adaptive_avg_pool2d(features, side)
    return resize_bilinear(features, side)


def concat_maps(maps: Sequence[Tensor], side: int) -> Tensor:
    """Several (B,C_i,h_i,w_i) maps → one (B, ΣC_i, side, side) map (each resized bilinearly, then concatenated)."""
    return torch.cat([resize_bilinear(m, side) for m in maps], dim=1)


def windows(features: Tensor, grid: int) -> Tensor:
    """(B, C, grid·p, grid·p) → (B, grid², p², C): the p×p window under each grid cell, cells in row-major order
    (the same order as :func:`~eaglesearch.model.resample.to_grid` tokens), pixels row-major inside a window."""
    b, c, h, w = features.shape
    if h != w or h % grid:
        raise ValueError(f"a {h}×{w} map cannot be cut into {grid}×{grid} square windows; resize it to a multiple "
                         f"of {grid} first")
    p = h // grid
    x = features.reshape(b, c, grid, p, grid, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, grid * grid, p * p, c)
