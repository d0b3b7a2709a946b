"""LLaVA-HR mixture-of-resolution adaptation (``multipath_encoder_wapper.py`` of LLaVA-HR, reference/eagle.md §2).

The first expert is the *fast* branch, a ViT run block by block; the other experts are the *slow* branch, their
high-resolution maps (concatenated on channels at the largest of their sides when there are several). The ViT's
blocks are split into 4 quarters as evenly as possible and after each of the first 3 quarters an MR-adapter
(``S2FStitchAlignModuleV2``) injects the slow map into the ViT's patch tokens:

* slow: conv1×1 → GELU → conv1×1 to the ViT width (last conv zero-initialised), resized to the ViT patch grid
  (average-pooled when larger, bilinear when smaller);
* fast: residual depthwise 7×7 conv → GELU → conv1×1 (zero-initialised);
* gate g = MLP(mean over tokens of concat(fast, slow)), one scalar per image; fast += tanh(g)·slow.

With fewer than 4 blocks the adapters go after every block boundary the quarters fall on (a 1-block ViT gets one
adapter, after its block). Prefix tokens (CLS) pass the adapters untouched. Finally ``MultiPathAlignModule``:
out = Linear(fast) + Linear(slow), both resized to the common grid the same way. Because of the zero inits the
adapters start as the identity, so at initialisation the fast branch is exactly the plain ViT. N = grid²,
out_dim = the ViT width, then the shared projector. Unlike LLaVA-HR, the adapters exist even when the ViT is frozen.

The ViT expert must expose block-level access: ``is_vit``, ``vit_embed(pixels) -> (x, (h, w))``,
``vit_blocks()`` and ``vit_to_map(x, (h, w)) -> (B, C, h, w)``, with ``forward(p) == vit_to_map(blocks(embed(p)))``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eaglesearch.model.experts.base import VisionExpert
from eaglesearch.model.fusions.base import Fusion
from eaglesearch.model.fusions.injection import QueryAuxSplit
from eaglesearch.model.fusions.maps import concat_maps, expert_map, pool_or_upsample
from eaglesearch.model.fusions.rules import LLAVA_HR
from eaglesearch.spec import ModelSpec

QUARTERS = 4


def adapter_positions(depth: int) -> list[int]:
    """After how many blocks each MR-adapter runs: the ends of the first 3 of 4 near-equal quarters (LLaVA-HR:
    depth 24 → [6, 12, 18]); fewer when quarters share a boundary (depth 2 → [1]); [1] for a single block."""
    if depth < 1:
        raise ValueError(f"llava_hr needs a ViT with at least one block; got {depth}")
    ends = sorted({(depth * k + QUARTERS // 2) // QUARTERS for k in range(1, QUARTERS)} & set(range(1, depth)))
    return ends or [depth]


def check_vit(expert: VisionExpert) -> None:
    """``ValueError`` unless ``expert`` is a plain ViT with block access (``is_vit``)."""
    if not expert.is_vit:
        raise ValueError(f"fusion 'llava_hr' runs its first expert block by block, but expert '{expert.name}' "
                         f"({type(expert).__name__}) is not a plain ViT with block access (is_vit, vit_embed, "
                         "vit_blocks, vit_to_map); put a ViT expert such as clip first")


class MRAdapter(nn.Module):
    """LLaVA-HR's ``S2FStitchAlignModuleV2``: gated injection of the slow map into the fast ViT patch map."""

    def __init__(self, fast_dim: int, slow_dim: int) -> None:
        super().__init__()
        self.slow_conv = nn.Conv2d(slow_dim, slow_dim, 1)
        self.slow_proj = nn.Conv2d(slow_dim, fast_dim, 1)
        self.fast_conv = nn.Conv2d(fast_dim, fast_dim, 7, padding=3, groups=fast_dim)
        self.fast_proj = nn.Conv2d(fast_dim, fast_dim, 1)
        self.gate = nn.Sequential(nn.Linear(2 * fast_dim, max(fast_dim // 2, 1)), nn.GELU(),
                                  nn.Linear(max(fast_dim // 2, 1), 1))
        nn.init.xavier_uniform_(self.slow_conv.weight)
        nn.init.xavier_uniform_(self.fast_conv.weight)
        for conv in (self.slow_conv, self.fast_conv, self.slow_proj, self.fast_proj):
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.slow_proj.weight)
        nn.init.zeros_(self.fast_proj.weight)

    def forward(self, fast: Tensor, slow: Tensor) -> Tensor:
        """Fast patch map (B,C,h,h) and slow map (B,C_s,H,H) → the fast map with the slow one injected."""
        slow = pool_or_upsample(self.slow_proj(F.gelu(self.slow_conv(slow))), fast.shape[-1])
        fast = fast + self.fast_proj(F.gelu(self.fast_conv(fast)))
        gate = self.gate(torch.cat([fast, slow], dim=1).mean(dim=(2, 3)))  # (B, 1)
        return fast + gate.tanh()[:, :, None, None] * slow


class LlavaHR(Fusion):
    """(B, grid², C_vit): a ViT with MR-adapters fed by the high-resolution experts, then the two-path align."""

    rules = LLAVA_HR

    def __init__(self, spec: ModelSpec, experts: Sequence[VisionExpert], lm_dim: int) -> None:
        split = QueryAuxSplit.of(spec, experts)
        check_vit(experts[0])
        width = experts[0].channels
        super().__init__(spec, experts, lm_dim)
        self.num_tokens, self.out_dim = spec.grid**2, width
        self.positions = adapter_positions(len(experts[0].vit_blocks()))
        self.slow_side = split.aux_side
        self.adapters = nn.ModuleList(MRAdapter(width, split.aux_width) for _ in self.positions)
        self.fast_out = nn.Linear(width, width)  # MultiPathAlignModule
        self.slow_out = nn.Linear(split.aux_width, width)

    def fuse(self, experts: Sequence[VisionExpert], images: Tensor) -> Tensor:
        slow = self.slow_map(experts, images)
        fast = self.fast_map(experts[0], images, slow)
        return self.align(fast, slow)

    def slow_map(self, experts: Sequence[VisionExpert], images: Tensor) -> Tensor:
        """The slow branch: the other experts' maps, concatenated on channels (B, C_s, H, H)."""
        return concat_maps([expert_map(e, images) for e in experts[1:]], self.slow_side)

    def fast_map(self, expert: VisionExpert, images: Tensor, slow: Tensor) -> Tensor:
        """The fast branch: the ViT run block by block with the MR-adapters → its map (B, C_vit, h, h)."""
        check_vit(expert)
        tokens, size = expert.vit_embed(expert.preprocess(images))
        adapters = dict(zip(self.positions, self.adapters, strict=True))
        for done, block in enumerate(expert.vit_blocks(), start=1):
            tokens = block(tokens)
            if done in adapters:
                tokens = inject(tokens, size, partial(adapters[done], slow=slow))
        return expert.vit_to_map(tokens, size)

    def align(self, fast: Tensor, slow: Tensor) -> Tensor:
        """LLaVA-HR's ``MultiPathAlignModule`` on the common grid: Linear(fast) + Linear(slow) → (B, grid², C)."""
        fast_tokens = pool_or_upsample(fast, self.grid).flatten(2).transpose(1, 2)
        slow_tokens = pool_or_upsample(slow, self.grid).flatten(2).transpose(1, 2)
        return self.fast_out(fast_tokens) + self.slow_out(slow_tokens)


def inject(tokens: Tensor, size: tuple[int, int], change: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply ``change`` to the patch tokens of a (B, prefix + h·w, C) ViT token sequence (patches last, timm's
    layout) seen as a (B, C, h, w) map; the prefix tokens (CLS, registers) are kept as they are."""
    h, w = size
    b, t, c = tokens.shape
    prefix = t - h * w
    if prefix < 0:
        raise ValueError(f"a ViT token sequence of length {t} cannot hold a {h}×{w} patch grid")
    patches = tokens[:, prefix:].transpose(1, 2).reshape(b, c, h, w)
    changed = change(patches).flatten(2).transpose(1, 2)
    return torch.cat([tokens[:, :prefix], changed], dim=1)
