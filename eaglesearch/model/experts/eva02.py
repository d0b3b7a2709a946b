"""EVA-02 ViT expert (Eagle's expert F, the "det-1024" tower: object-centric, strong on POPE and GQA).

``paper``: EVA-02-L as Eagle uses it — patch 16, width 1024, depth 24, 16 heads, SwiGLU (mlp ratio 8/3), RoPE — at
1024 px: a 64×64 map × 1024 channels that reaches Eagle's 32×32 grid BILINEARLY (resample mode ``bilinear``, so the
width stays 1024; pixel-unshuffle would make it 4096). timm has no ViTDet-style EVA-02 (Eagle's ``EVAViT`` with
window attention, w=16, on all blocks but 2, 5, …, 23), so this is timm's ``eva02_large_patch14_448`` config built
from config with ``patch_size=16, img_size=1024``: every block attends globally, which costs more FLOPs than Eagle's
tower at 4096 tokens. Pretrained: timm ``eva02_large_patch14_224.mim_m38m`` (the MIM-pretrained EVA-02-L that
Eagle's COCO/Objects365 detection checkpoint was fine-tuned from), its 14-px patch embedding resampled to 16 px by
timm; Eagle's own detection weights (hub ``Yuxin-CV/EVA-02``, ``eva02/det/eva02_L_coco_det_sys_o365.pth``) use
detectron2 key names and must be converted before ``checkpoint:`` can load them.
``tiny``: timm ``eva02_tiny_patch14_224`` at width 128, depth 2, 4 heads, random init; 112 px gives 8×8.
Features: last block, CLS token dropped, no final norm. Normalisation: CLIP mean/std (EVA-02's, and what Eagle
feeds every tower). A plain ViT: tileable, with stage access; its blocks need the RoPE table of the input's patch
grid, so ``vit_blocks`` returns :class:`RopeBlock` wrappers that build it from the token count.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from eaglesearch.model.experts.base import CLIP_MEAN, CLIP_STD, ExpertPreset
from eaglesearch.model.experts.registry import ExpertFamily, register_expert
from eaglesearch.model.experts.timm_expert import TimmViTExpert

FEATURE_LAYER = "last block output, CLS token dropped, no final LayerNorm (as Eagle's EVAViT)"


class RopeBlock(nn.Module):
    """An EVA block called like a plain ViT block: ``block(x)`` adds the rotary embedding of x's patch grid.

    The grid is ``hw`` when given, else the square whose area is the number of patch tokens (the experts here
    always see square inputs).
    """

    def __init__(self, block: nn.Module, rope: nn.Module, num_prefix_tokens: int) -> None:
        super().__init__()
        self.block = block
        self.rope = rope
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        if hw is None:
            patches = x.shape[1] - self.num_prefix_tokens
            side = math.isqrt(patches)
            if side * side != patches:
                raise ValueError(f"{patches} patch tokens do not make a square grid; call the block with "
                                 "hw=(h, w) from vit_embed for a non-square input")
            hw = (side, side)
        return self.block(x, rope=self.rope.get_embed(shape=hw))


class Eva02Expert(TimmViTExpert):
    """timm ``Eva``: like a timm ViT, but ``_pos_embed`` also returns the RoPE table the blocks take."""

    def vit_embed(self, pixels: Tensor) -> tuple[Tensor, tuple[int, int]]:
        b = self.backbone
        x, _ = b._pos_embed(b.patch_embed(pixels))
        return b.norm_pre(x), self.patch_grid(pixels)

    def vit_blocks(self) -> list[nn.Module]:
        """RoPE-adding wrappers around the expert's own blocks (hold them in a plain list)."""
        b = self.backbone
        if b.rope is None or getattr(b, "rope_mixed", False):
            raise TypeError(f"expert '{self.name}': this EVA configuration has no single shared RoPE table; stage "
                            "access supports EVA-02 with axial RoPE only")
        return [RopeBlock(block, b.rope, self.num_prefix_tokens) for block in b.blocks]


PRESETS = {
    "tiny": ExpertPreset(
        architecture="eva02_tiny_patch14_224",
        resolution=112,
        stride=14,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        feature_layer=FEATURE_LAYER,
        kwargs={"embed_dim": 128, "depth": 2, "num_heads": 4, "num_classes": 0, "dynamic_img_size": True},
        resample="bilinear",
        blocks=2,
        pretext="masked", pretext_settings={"steps": 300, "batch_size": 32},
    ),
    "paper": ExpertPreset(
        architecture="eva02_large_patch14_448",
        resolution=1024,
        stride=16,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        feature_layer=FEATURE_LAYER,
        kwargs={"patch_size": 16, "num_classes": 0, "dynamic_img_size": True},
        weights="eva02_large_patch14_224.mim_m38m",
        resample="bilinear",
        blocks=24,
    ),
}

EVA02 = register_expert(ExpertFamily(
    name="eva02",
    description="EVA-02 ViT (EVA-02-L, patch 16 at 1024 px, as Eagle's det tower, in the paper)",
    presets=PRESETS,
    build=Eva02Expert.from_spec,
    tileable=True,
))
