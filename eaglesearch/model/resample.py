"""Bring every expert's feature map to the common token grid (Eagle §1.5 of reference/eagle.md).

Three cases, chosen from the map's side ``h`` and the grid side ``g``:

* ``h == g``: flatten, nothing else;
* ``h == k·g`` for an integer ``k > 1``: ``pixel_unshuffle(k)`` — no information is lost, channels grow ``k²``-fold
  (Eagle does this for SAM: 64×64×256 → 32×32×1024);
* otherwise (smaller, or not a multiple): bilinear interpolation with ``align_corners=True``, as Eagle does for
  CLIP at 336 px (24 → 32) and Pix2Struct (45 → 32).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def unshuffle_factor(native_grid: int, grid: int) -> int:
    """``k`` when ``native_grid == k·grid`` with ``k > 1`` (pixel-unshuffle case), else 1."""
    if native_grid > grid and native_grid % grid == 0:
        return native_grid // grid
    return 1


def grid_channels(channels: int, native_grid: int, grid: int) -> int:
    """Channels per token after :func:`to_grid` for a (channels, native_grid, native_grid) map."""
    return channels * unshuffle_factor(native_grid, grid) ** 2


def to_grid(features: Tensor, grid: int) -> Tensor:
    """(B, C, h, w) feature map → (B, grid², C') tokens in row-major order."""
    if features.dim() != 4:
        raise ValueError(f"to_grid expects a (B,C,h,w) feature map; got shape {tuple(features.shape)}")
    if grid <= 0:
        raise ValueError(f"grid must be positive; got {grid}")
    h, w = features.shape[-2:]
    if h == w == grid:
        out = features
    elif h == w and unshuffle_factor(h, grid) > 1:
        out = F.pixel_unshuffle(features, unshuffle_factor(h, grid))
    else:
        out = F.interpolate(features, size=(grid, grid), mode="bilinear", align_corners=True)
    return out.flatten(2).transpose(1, 2)
