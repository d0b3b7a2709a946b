"""SigLIP ViT expert (Eagle 2's vision encoder; not one of Eagle-1's experts).

``paper``: SigLIP so400m/14 (timm ``vit_so400m_patch14_siglip_384.webli``, the encoder family of Eagle 2) at 378 px,
the checkpoint's own 27×27 patch grid (its 384 px input also gives 27 patches; the last 6 px fall off the stride-14
patch embedding, and resolutions must be multiples of 14 here): a 27×27 map × 1152 channels, bilinear to the common
grid. Eagle 2 fed its (PaliGemma) SigLIP 448 px: ``resolution: 448`` gives 32×32 directly, position embeddings
interpolated. SigLIP has no CLS token (its attention-pool head is dropped, as is the
final norm). ``tiny``: timm ``vit_base_patch16_siglip_224`` at width 128, depth 2, 4 heads, patch 16, random init;
128 px gives 8×8. Features: last transformer block, no final norm. Normalisation: mean 0.5 / std 0.5 (SigLIP's).
A plain ViT: tileable, with stage access.
"""

from __future__ import annotations

from eaglesearch.model.experts.preset import SIGLIP_MEAN, SIGLIP_STD, ExpertPreset
from eaglesearch.model.experts.registry import ExpertFamily, register_expert

FEATURE_LAYER = "last block output (no prefix tokens), no final LayerNorm, no attention-pool head"

PRESETS = {
    "tiny": ExpertPreset(
        architecture="vit_base_patch16_siglip_224",
        resolution=64,
        stride=16,
        mean=SIGLIP_MEAN,
        std=SIGLIP_STD,
        feature_layer=FEATURE_LAYER,
        kwargs={"embed_dim": 128, "depth": 2, "num_heads": 4, "num_classes": 0, "dynamic_img_size": True},
        resample="bilinear",
        blocks=2,
        pretext="caption", pretext_settings={"steps": 600, "batch_size": 32},
    ),
    "paper": ExpertPreset(
        architecture="vit_so400m_patch14_siglip_384",
        resolution=378,
        stride=14,
        mean=SIGLIP_MEAN,
        std=SIGLIP_STD,
        feature_layer=FEATURE_LAYER,
        kwargs={"num_classes": 0, "dynamic_img_size": True},
        weights="vit_so400m_patch14_siglip_384.webli",
        resample="bilinear",
        blocks=27,
        source="timm vit_so400m_patch14_siglip_384.webli (google/siglip-so400m-patch14-384)",
        output=(27, 1152),
    ),
}

SIGLIP = register_expert(ExpertFamily(
    name="siglip",
    description="SigLIP ViT (so400m/14 at 384 px, Eagle 2's encoder)",
    presets=PRESETS,
    build="eaglesearch.model.experts.timm_expert:TimmViTExpert.from_spec",
    tileable=True,
    vit=True,
))
