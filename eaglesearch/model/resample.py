"""Bring every expert's feature map to the common token grid (Eagle §1.5 of reference/eagle.md).

Three modes; each expert preset declares the one Eagle uses for it (``ExpertPreset.resample``):

* ``"bilinear"``: bilinear interpolation with ``align_corners=True`` whenever the map's side ``h`` differs from the
  grid side ``g`` (flatten only when equal); channels never change. Eagle does this for CLIP at 336 px (24 → 32),
  EVA-02 (64 → 32) and Pix2Struct (45 → 32).
* ``"unshuffle"``: ``pixel_unshuffle(k)`` for ``h == k·g`` (``k == 1``: flatten only) — no information is lost and
  channels grow ``k²``-fold (Eagle: SAM 64×64×256 → 32×32×1024). A map side that is not a multiple of the grid is an
  error naming the fix.
* ``"auto"``: ``"unshuffle"`` when ``h`` is a multiple of ``g``, ``"bilinear"`` otherwise (what the model did before
  presets declared a mode; SAM uses it so that grids its map side is not a multiple of still work).

:func:`to_common_grid` / :func:`expert_grid_channels` apply an expert's own mode; :func:`to_grid` /
:func:`grid_channels` take the mode explicitly (default ``"auto"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor

from eaglesearch.model.experts.preset import ResampleMode

if TYPE_CHECKING:
    from eaglesearch.model.experts.base import VisionExpert

RESAMPLE_MODES: tuple[ResampleMode, ...] = ("bilinear", "unshuffle", "auto")


def unshuffle_factor(native_grid: int, grid: int, mode: ResampleMode = "auto") -> int:
    """``k`` when the map is pixel-unshuffled by ``k > 1`` onto ``grid`` under ``mode``, else 1."""
    _check(native_grid, grid, mode)
    if mode == "bilinear":
        return 1
    if native_grid > grid and native_grid % grid == 0:
        return native_grid // grid
    return 1


def grid_channels(channels: int, native_grid: int, grid: int, mode: ResampleMode = "auto") -> int:
    """Channels per token after :func:`to_grid` for a (channels, native_grid, native_grid) map."""
    return channels * unshuffle_factor(native_grid, grid, mode) ** 2


def to_grid(features: Tensor, grid: int, mode: ResampleMode = "auto") -> Tensor:
    """(B, C, h, h) feature map → (B, grid², C') tokens in row-major order."""
    if features.dim() != 4:
        raise ValueError(f"to_grid expects a (B,C,h,w) feature map; got shape {tuple(features.shape)}")
    h, w = features.shape[-2:]
    if h != w and mode == "unshuffle":
        raise ValueError(f"pixel-unshuffle needs a square feature map; got {h}×{w}")
    k = unshuffle_factor(h, grid, mode) if h == w else 1
    if h == w == grid:
        out = features
    elif k > 1:
        out = F.pixel_unshuffle(features, k)
    else:
        out = F.interpolate(features, size=(grid, grid), mode="bilinear", align_corners=True)
    return out.flatten(2).transpose(1, 2)


def to_common_grid(expert: VisionExpert, features: Tensor, grid: int) -> Tensor:
    """An expert's (B, C, h, h) map → (B, grid², C') tokens, resampled the way its preset declares."""
    return to_grid(features, grid, expert.resample)


def expert_grid_channels(expert: VisionExpert, grid: int) -> int:
    """C', the width of one of ``expert``'s tokens on the common grid (under its own resample mode)."""
    return grid_channels(expert.channels, expert.native_grid, grid, expert.resample)


def _check(native_grid: int, grid: int, mode: ResampleMode) -> None:
    if grid <= 0:
        raise ValueError(f"grid must be positive; got {grid}")
    if mode not in RESAMPLE_MODES:
        raise ValueError(f"unknown resample mode '{mode}'; choose one of {', '.join(RESAMPLE_MODES)}")
    if mode == "unshuffle" and native_grid % grid:
        lower = [g for g in range(1, native_grid + 1) if native_grid % g == 0]
        raise ValueError(f"pixel-unshuffle cannot bring a {native_grid}×{native_grid} feature map to a {grid}×{grid} "
                         f"grid ({native_grid} is not a multiple of {grid}); use a grid dividing {native_grid} "
                         f"(one of {lower}) or change the expert's resolution so its map side is a multiple of "
                         f"{grid}")
