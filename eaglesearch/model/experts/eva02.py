"""EVA-02 ViT expert (Eagle's expert F, the "det-1024" tower: object-centric, strong on POPE and GQA).

``paper``: Eagle's tower itself: EVA-02-L as a ViTDet-style detection backbone (``eva02_vitdet.py``): patch 16,
width 1024, depth 24, 16 heads, SwiGLU (8/3), 2-D RoPE, window attention (w=16) in every block but 2, 5, …, 23, at
1024 px: a 64×64 map × 1024 channels, BILINEAR to Eagle's 32×32 grid (resample ``bilinear``, so the width stays
1024). Weights: the COCO + Objects365 detection checkpoint ``eva02_L_coco_det_sys_o365.pth`` (hub
``Yuxin-CV/EVA-02``, file ``eva02/det/eva02_L_coco_det_sys_o365.pth``), its detectron2 keys converted on load; set
``checkpoint:`` to a local copy of that file, or leave it unset to fetch it from the hub.
``mim``: the MIM-pretrained EVA-02-L (timm ``eva02_large_patch14_224.mim_m38m``, the model the detection checkpoint
was fine-tuned from), built as timm's ``eva02_large_patch14_448`` with ``patch_size=16`` at 1024 px: global
attention in every block (more FLOPs than Eagle's tower at 4096 tokens) and the 14-px patch embedding resampled to
16 px by timm. Not Eagle's expert: kept to compare the two.
``tiny``: timm ``eva02_tiny_patch14_224`` at width 128, depth 2, 4 heads, random init; 112 px gives 8×8.
Features: last block, CLS token dropped (timm), no final norm. Normalisation: CLIP mean/std (EVA-02's, and what
Eagle feeds every tower). The timm presets are plain ViTs (tileable, with stage access; their blocks need the RoPE
table of the input's patch grid, so ``vit_blocks`` returns :class:`RopeBlock` wrappers); the ViTDet one is not a
plain ViT (its blocks work on (B, H, W, C) maps, windowed), so fusions that need stage access refuse it.
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import Tensor, nn

from eaglesearch.model.experts.base import CLIP_MEAN, CLIP_STD, ExpertPreset, VisionExpert
from eaglesearch.model.experts.eva02_vitdet import EvaViTDet, load_detectron2_checkpoint
from eaglesearch.model.experts.registry import ExpertFamily, register_expert
from eaglesearch.model.experts.timm_expert import TimmViTExpert
from eaglesearch.model.experts.weights import ensure_hub_reachable, local_checkpoint, offline_message
from eaglesearch.spec import ExpertSpec

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


VITDET = "eva02_vitdet"
"""``ExpertPreset.architecture`` of the ViTDet-style backbone (ours, not a timm name)."""
DET_HUB_FILE = "eva02/det/eva02_L_coco_det_sys_o365.pth"


class Eva02DetExpert(VisionExpert):
    """EVA-02 ViTDet backbone (:class:`EvaViTDet`): a (B, dim, R/16, R/16) map; its blocks are what
    ``trainable_blocks`` counts."""

    def __init__(self, name: str, resolution: int, preset: ExpertPreset, backbone: EvaViTDet) -> None:
        super().__init__(name, resolution, backbone.patch_embed.proj.out_channels, backbone.grid, preset.mean,
                         preset.std, preset.resample)
        self.feature_layer = preset.feature_layer
        self.backbone = backbone

    def forward(self, pixels: Tensor) -> Tensor:
        return self.backbone(pixels)

    def freezable_blocks(self) -> list[nn.Module]:
        return list(self.backbone.blocks)


def build_eva02_vitdet(spec: ExpertSpec, preset: ExpertPreset) -> Eva02DetExpert:
    """Random init, a local checkpoint file (detectron2 layout or already converted), or the hub's detection
    checkpoint (``preset.weights``: ``<repo>/<file>``)."""
    assert spec.resolution is not None, "resolve the spec with registry.resolve_expert first"
    where = f"expert '{spec.name}' (preset '{spec.preset}', EVA-02 ViTDet)"
    backbone = EvaViTDet(image_size=spec.resolution, **preset.kwargs)
    if spec.pretrained:
        try:
            path = local_checkpoint(spec.checkpoint)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{where}: {err}") from None
        if path is None:
            repo, _, file = (spec.checkpoint or preset.weights or "").partition("/eva02/")
            file = f"eva02/{file}" if file else DET_HUB_FILE
            ensure_hub_reachable(repo, where)
            from huggingface_hub import hf_hub_download

            try:
                path = Path(hf_hub_download(repo, file))
            except OSError as err:
                raise RuntimeError(offline_message(where, repo, err)) from None
        load_detectron2_checkpoint(backbone, path, where)
    return Eva02DetExpert(spec.name, spec.resolution, preset, backbone)


def build_eva02(spec: ExpertSpec, preset: ExpertPreset) -> VisionExpert:
    """The ViTDet backbone for presets of that architecture, else the timm EVA-02."""
    if preset.architecture == VITDET:
        return build_eva02_vitdet(spec, preset)
    return Eva02Expert.from_spec(spec, preset)


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
        architecture=VITDET,
        resolution=1024,
        stride=16,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        feature_layer="last block output (B, C, H, W), no final norm (Eagle's EVAViT)",
        kwargs={"patch": 16, "dim": 1024, "depth": 24, "heads": 16, "window": 16,
                "global_blocks": (2, 5, 8, 11, 14, 17, 20, 23)},
        weights=f"Yuxin-CV/EVA-02/{DET_HUB_FILE}",
        resample="bilinear",
        blocks=24,
        source=f"EVA-02-L COCO+Objects365 detection (hub Yuxin-CV/EVA-02, {DET_HUB_FILE}; detectron2 keys "
               "backbone.net.* converted)",
        output=(64, 1024),
        tileable=False,
    ),
    "mim": ExpertPreset(
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
        source="timm eva02_large_patch14_224.mim_m38m (MIM-pretrained EVA-02-L, patch embedding resampled 14→16)",
        output=(64, 1024),
    ),
}

EVA02 = register_expert(ExpertFamily(
    name="eva02",
    description="EVA-02 ViT (paper: Eagle's det tower, EVA-02-L ViTDet at 1024 px; mim: the MIM-pretrained EVA-02-L)",
    presets=PRESETS,
    build=build_eva02,
    tileable=True,
))
