"""DINOv2 ViT expert (Eagle's expert D, self-supervised; not in the final Eagle-X5 set).

``paper``: DINOv2 ViT-L/14 (timm ``vit_large_patch14_dinov2.lvd142m``, 1 CLS token, LayerScale) at 448 px: a
32×32 map × 1024 channels (the released Eagle code has no DINOv2 branch; the paper says bilinear or pixel shuffle
to 1024 tokens, reference/eagle.md §1.2). The position embedding (pretrained at 518 px) is resampled to the input
size. ``tiny``: timm ``vit_small_patch14_dinov2`` at width 128, depth 2, 4 heads, random init; 112 px gives 8×8.
Features: last transformer block, CLS token dropped, no final norm. Normalisation: ImageNet mean/std (DINOv2's).
Reaches the common grid bilinearly. A plain ViT: tileable, with stage access.
"""

from __future__ import annotations

from eaglesearch.model.experts.preset import IMAGENET_MEAN, IMAGENET_STD, ExpertPreset
from eaglesearch.model.experts.registry import ExpertFamily, register_expert

FEATURE_LAYER = "last block output, CLS token dropped, no final LayerNorm"

PRESETS = {
    "tiny": ExpertPreset(
        architecture="vit_small_patch14_dinov2",
        resolution=112,
        stride=14,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_layer=FEATURE_LAYER,
        kwargs={"embed_dim": 128, "depth": 2, "num_heads": 4, "num_classes": 0, "dynamic_img_size": True},
        resample="bilinear",
        blocks=2,
        pretext="views", pretext_settings={"steps": 300, "batch_size": 16},
    ),
    "paper": ExpertPreset(
        architecture="vit_large_patch14_dinov2",
        resolution=448,
        stride=14,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        feature_layer=FEATURE_LAYER,
        kwargs={"num_classes": 0, "dynamic_img_size": True},
        weights="vit_large_patch14_dinov2.lvd142m",
        resample="bilinear",
        blocks=24,
        source="timm vit_large_patch14_dinov2.lvd142m (facebook/dinov2-large)",
        output=(32, 1024),
    ),
}

DINOV2 = register_expert(ExpertFamily(
    name="dinov2",
    description="DINOv2 ViT (ViT-L/14 in the paper)",
    presets=PRESETS,
    build="eaglesearch.model.experts.timm_expert:TimmViTExpert.from_spec",
    tileable=True,
    vit=True,
))
