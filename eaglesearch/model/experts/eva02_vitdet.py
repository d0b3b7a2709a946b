"""EVA-02 as a ViTDet-style detection backbone: the "det-1024" tower of Eagle (``EVAViT`` in Eagle's
``eva_vit.py``, itself from EVA's detectron2 code), and the conversion of its detectron2 checkpoint.

timm's ``Eva`` has no window attention, so this is a small module of our own, with the parameter names of the
original so its checkpoint loads after stripping a prefix:

* patch embedding (``patch_embed.proj``, 16 px), an absolute position table (``pos_embed``, with a CLS slot that is
  dropped, interpolated bicubically to the input's patch grid), no CLS token in the sequence;
* ``depth`` blocks on a (B, H, W, C) map: pre-LN attention with separate q/k/v projections (k without bias, as
  ``q_bias`` / ``v_bias``), 2-D RoPE on q and k, then a SwiGLU MLP (``w1``, ``w2``, ``ffn_ln``, ``w3``; hidden
  ``int(dim · 8/3)``). Blocks not in ``global_blocks`` attend within ``window``×``window`` windows (the map padded
  to a multiple of the window); RoPE is the window's table there and the whole map's in global blocks;
* output: the last block's map, (B, C, H, W), no final norm.

Checkpoint (``eva02_L_coco_det_sys_o365.pth``, hub ``Yuxin-CV/EVA-02``, ``eva02/det/``): a detectron2 file whose
state dict (under ``model``, or ``ema_state`` / ``module``) holds the backbone as ``backbone.net.*`` beside the
detector's heads. :func:`convert_detectron2_state` keeps the backbone, strips the prefix and drops the RoPE tables
(recomputed here for the input size).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PREFIXES = ("backbone.net.", "backbone.", "visual.")
CONTAINERS = ("model", "ema_state", "module", "state_dict")


def rope_table(dim: int, grid: int, pretrained_grid: int = 16, theta: float = 10000.0) -> tuple[Tensor, Tensor]:
    """(cos, sin) of EVA-02's 2-D RoPE for a ``grid``×``grid`` map, each (grid², 2·dim): ``dim`` frequencies per
    axis,
    positions rescaled to the ``pretrained_grid`` the model was trained at (EVA's ``VisionRotaryEmbeddingFast``)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
    t = torch.arange(grid).float() / grid * pretrained_grid
    angles = torch.outer(t, freqs).repeat_interleave(2, dim=-1)  # (grid, dim), each frequency twice
    table = torch.cat([angles[:, None, :].expand(grid, grid, dim), angles[None, :, :].expand(grid, grid, dim)], -1)
    table = table.reshape(grid * grid, 2 * dim)
    return table.cos(), table.sin()


def rotate_pairs(x: Tensor) -> Tensor:
    """(x0, x1, x2, x3, …) → (-x1, x0, -x3, x2, …): the rotation RoPE pairs adjacent channels with."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1, self.w2 = nn.Linear(dim, hidden), nn.Linear(dim, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=1e-6)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, h, w, c = x.shape
        x = x.reshape(b, h * w, c)
        q = F.linear(x, self.q_proj.weight, self.q_bias)
        k = self.k_proj(x)
        v = F.linear(x, self.v_proj.weight, self.v_bias)
        q, k, v = (t.reshape(b, h * w, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        q = (q * cos + rotate_pairs(q) * sin).type_as(v)
        k = (k * cos + rotate_pairs(k) * sin).type_as(v)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, c))


class Block(nn.Module):
    """Pre-LN attention (windowed when ``window`` > 0) and SwiGLU MLP on a (B, H, W, C) map."""

    def __init__(self, dim: int, heads: int, hidden: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLU(dim, hidden)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
        shortcut, x = x, self.norm1(x)
        if self.window:
            b, h, w, c = x.shape
            s = self.window
            pad_h, pad_w = -h % s, -w % s
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
            hp, wp = h + pad_h, w + pad_w
            x = x.reshape(b, hp // s, s, wp // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s, s, c)
            x = self.attn(x, *rope)
            x = x.reshape(b, hp // s, wp // s, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
            x = x[:, :h, :w]
        else:
            x = self.attn(x, *rope)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class EvaViTDet(nn.Module):
    """The backbone: (B, 3, R, R) pixels → (B, dim, R/patch, R/patch) map (see the module docstring)."""

    def __init__(self, *, image_size: int, patch: int = 16, dim: int = 1024, depth: int = 24, heads: int = 16,
                 mlp_ratio: float = 8 / 3, window: int = 16,
                 global_blocks: Sequence[int] = (2, 5, 8, 11, 14, 17, 20, 23),
                 pos_grid: int = 14, rope_pretrained_grid: int = 16) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"EVA-02 ViTDet: image size {image_size} is not a multiple of its patch size {patch}")
        self.patch, self.grid = patch, image_size // patch
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_grid * pos_grid + 1, dim))
        self.global_blocks = tuple(global_blocks)
        hidden = int(dim * mlp_ratio)
        self.blocks = nn.ModuleList(Block(dim, heads, hidden, 0 if i in self.global_blocks else window)
                                    for i in range(depth))
        rope_dim = dim // heads // 2
        for name, grid in (("win", window), ("glb", self.grid)):
            cos, sin = rope_table(rope_dim, grid or self.grid, rope_pretrained_grid)
            self.register_buffer(f"rope_{name}_cos", cos, persistent=False)
            self.register_buffer(f"rope_{name}_sin", sin, persistent=False)
        nn.init.normal_(self.pos_embed, std=0.02)

    def position_table(self, h: int, w: int) -> Tensor:
        """The absolute position table, CLS slot dropped, resized bicubically to ``h``×``w``: (1, h, w, dim)."""
        table = self.pos_embed[:, 1:]
        side = math.isqrt(table.shape[1])
        grid = table.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        if (side, side) != (h, w):
            grid = F.interpolate(grid.float(), size=(h, w), mode="bicubic", align_corners=False).to(table.dtype)
        return grid.permute(0, 2, 3, 1)

    def forward(self, pixels: Tensor) -> Tensor:
        x = self.patch_embed.proj(pixels).permute(0, 2, 3, 1)  # (B, H, W, C)
        h, w = x.shape[1:3]
        if (h, w) != (self.grid, self.grid):
            raise ValueError(f"EVA-02 ViTDet was built for a {self.grid}×{self.grid} patch grid (RoPE table); got "
                             f"{h}×{w}: feed it {self.grid * self.patch} px")
        x = x + self.position_table(h, w)
        for block in self.blocks:
            rope = (self.rope_win_cos, self.rope_win_sin) if block.window else (self.rope_glb_cos, self.rope_glb_sin)
            x = block(x, rope)
        return x.permute(0, 3, 1, 2)


def convert_detectron2_state(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The backbone's state dict from a detectron2 / EVA checkpoint: unwrapped from ``model`` (or ``ema_state``,
    ``module``, ``state_dict``), ``backbone.net.`` stripped, detector heads and RoPE tables dropped, numpy arrays
    made tensors. A state dict already in this module's names passes through."""
    state: Mapping[str, Any] = checkpoint
    for name in CONTAINERS:
        if isinstance(state.get(name), Mapping):
            state = state[name]
            break
    keys = list(state)
    prefix = next((p for p in PREFIXES if any(k.startswith(p + "blocks.") for k in keys)), "")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith(prefix) or "rope" in key:
            continue
        out[key[len(prefix):]] = value if isinstance(value, Tensor) else torch.as_tensor(value)
    return out


def load_detectron2_checkpoint(model: EvaViTDet, path: Path, where: str) -> EvaViTDet:
    """Load the backbone of the checkpoint file at ``path`` into ``model`` (strict, after conversion)."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - an unreadable or non-tensor pickle: say how to re-save it
        raise RuntimeError(f"{where}: could not read checkpoint {path} ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else ''}); re-save its state dict with "
                           "torch.save(torch.load(path, weights_only=False)['model'], new_path) on a machine you "
                           "trust and point `checkpoint:` at new_path") from None
    state = convert_detectron2_state(raw)
    if not any(k.startswith("blocks.") for k in state):
        raise RuntimeError(f"{where}: checkpoint {path} holds no EVA-02 backbone (no 'backbone.net.blocks.*' keys; "
                           f"first keys: {', '.join(list(raw)[:5])}); point `checkpoint:` at "
                           "eva02_L_coco_det_sys_o365.pth or another EVA-02 ViTDet checkpoint")
    table = state.get("pos_embed")
    if table is not None and table.shape != model.pos_embed.shape:  # the table is interpolated at run time anyway
        model.pos_embed = nn.Parameter(torch.empty_like(table, dtype=model.pos_embed.dtype))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise RuntimeError(f"{where}: checkpoint {path} does not fit this architecture "
                           f"({' '.join(str(err).splitlines()[:3])}); point `checkpoint:` at an EVA-02-L ViTDet "
                           "checkpoint or choose the preset that matches it") from None
    return model
