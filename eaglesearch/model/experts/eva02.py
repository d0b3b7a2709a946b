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
table of the input's patch grid, so ``vit_blocks`` returns ``RopeBlock`` wrappers, in ``eva02_model.py``); the ViTDet one is not a
plain ViT (its blocks work on (B, H, W, C) maps, windowed), so fusions that need stage access refuse it.
"""

from __future__ import annotations

from eaglesearch.model.experts.preset import CLIP_MEAN, CLIP_STD, ExpertPreset
from eaglesearch.model.experts.registry import ExpertFamily, register_expert

FEATURE_LAYER = "last block output, CLS token dropped, no final LayerNorm (as Eagle's EVAViT)"

VITDET = "eva02_vitdet"
"""``ExpertPreset.architecture`` of the ViTDet-style backbone (ours, not a timm name)."""
DET_HUB_FILE = "eva02/det/eva02_L_coco_det_sys_o365.pth"


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
    build="eaglesearch.model.experts.eva02_model:build_eva02",
    tileable=True,
    vit=True,
))
