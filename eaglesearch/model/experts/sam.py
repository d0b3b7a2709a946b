"""SAM image-encoder expert (Eagle's expert C): a ViT-Det backbone plus its convolutional neck.

``paper``: SAM ViT-L (timm ``samvit_large_patch16.sa1b``) at 1024 px: the neck gives a 64×64 map × 256 channels,
which the to-grid step pixel-unshuffles by 2 into 32×32 × 1024 (as Eagle's ``add_pixel_shuffle``). Eagle swaps
SAM's neck for a shorter one (1×1 conv + LN); here timm's original neck is kept. ``tiny``: ViT-Det width 96,
depth 2 (block 1 global, block 0 windowed with window 4), neck 128, random init; 256 px gives 16×16 × 128, which
reaches an 8×8 grid by the same 2× pixel-unshuffle. Normalisation: ImageNet mean/std (SAM's own). Resample mode
``auto``: pixel-unshuffle when the map side is a multiple of the grid (Eagle's 64 → 32), bilinear otherwise.
``trainable_blocks`` counts ViT-Det blocks; the neck is trainable with any N ≥ 1. Not tileable and not a plain ViT
(windowed attention and a conv neck): no ``vit_*`` stage access.
"""

from __future__ import annotations

from eaglesearch.model.experts.preset import IMAGENET_MEAN, IMAGENET_STD, ExpertPreset
from eaglesearch.model.experts.registry import ExpertFamily, register_expert

FEATURE_LAYER = "neck output (after the last block), NCHW"


PRESETS = {
    "tiny": ExpertPreset(
        architecture="samvit_base_patch16",
        resolution=256,
        stride=16,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_layer=FEATURE_LAYER,
        kwargs={"patch_size": 16, "embed_dim": 96, "depth": 2, "num_heads": 4, "global_attn_indexes": (1,),
                "window_size": 4, "neck_chans": 128, "num_classes": 0},
        resample="auto",
        blocks=2,
        pretext="segment", pretext_settings={"steps": 300, "batch_size": 16},
    ),
    "paper": ExpertPreset(
        architecture="samvit_large_patch16",
        resolution=1024,
        stride=16,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_layer=FEATURE_LAYER,
        kwargs={"num_classes": 0},
        weights="samvit_large_patch16.sa1b",
        resample="auto",
        blocks=24,
        source="timm samvit_large_patch16.sa1b (facebook/sam-vit-large image encoder)",
        output=(64, 256),
    ),
}

SAM = register_expert(ExpertFamily(
    name="sam",
    description="SAM ViT-Det image encoder (SAM ViT-L in the paper)",
    presets=PRESETS,
    build="eaglesearch.model.experts.timm_expert:SamExpert.from_spec",
))
