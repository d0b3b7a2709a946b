"""CLIP ViT expert (Eagle's expert A).

``paper``: OpenAI CLIP ViT-L/14 (timm ``vit_large_patch14_clip_336.openai``) fed 448 px as the Eagle paper states
(32×32 tokens × 1024 channels; the released Eagle code fed 336 px, see reference/eagle.md §1.6a). The position
embedding is resampled to the input size. ``tiny``: the same architecture at width 128, depth 2, patch 16,
random init; 128 px gives an 8×8 map. Features: last transformer block, prefix (CLS) token dropped, no final norm.
Reaches the common grid bilinearly (Eagle: 24 → 32 at 336 px; none needed at 448). A plain ViT: tileable, with
stage access (``vit_embed``/``vit_blocks``/``vit_to_map``) for the LLaVA-HR fusion.
"""

from __future__ import annotations

from eaglesearch.model.experts.preset import CLIP_MEAN, CLIP_STD, ExpertPreset
from eaglesearch.model.experts.registry import ExpertFamily, register_expert

FEATURE_LAYER = "last block output, CLS token dropped, no final LayerNorm (as Eagle)"

PRESETS = {
    "tiny": ExpertPreset(
        architecture="vit_base_patch16_clip_224",
        resolution=64,
        stride=16,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        feature_layer=FEATURE_LAYER,
        kwargs={"patch_size": 16, "embed_dim": 128, "depth": 2, "num_heads": 4, "num_classes": 0,
                "dynamic_img_size": True},
        resample="bilinear",
        blocks=2,
        pretext="caption", pretext_settings={"steps": 600, "batch_size": 32},
    ),
    "paper": ExpertPreset(
        architecture="vit_large_patch14_clip_336",
        resolution=448,
        stride=14,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        feature_layer=FEATURE_LAYER,
        kwargs={"num_classes": 0, "dynamic_img_size": True},
        weights="vit_large_patch14_clip_336.openai",
        resample="bilinear",
        blocks=24,
        source="timm vit_large_patch14_clip_336.openai (openai/clip-vit-large-patch14-336), run at 448 px as in "
               "the paper (Eagle's code feeds 336)",
        output=(32, 1024),
    ),
}

CLIP = register_expert(ExpertFamily(
    name="clip",
    description="CLIP ViT (OpenAI ViT-L/14 in the paper)",
    presets=PRESETS,
    build="eaglesearch.model.experts.timm_expert:TimmViTExpert.from_spec",
    tileable=True,
    vit=True,
))
