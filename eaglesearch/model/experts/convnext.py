"""ConvNeXt expert (Eagle's expert B).

``paper``: ConvNeXt-XXLarge from LAION CLIP (timm ``convnext_xxlarge.clip_laion2b_soup``) at 1024 px: stage-4
output at stride 32, a 32×32 map × 3072 channels. ``tiny``: ``convnext_atto`` with depths (1,1,2,1) and dims
(32,64,96,128), random init; 256 px gives an 8×8 map × 128 channels. Features: last stage output, no head norm.
Fully convolutional, so any resolution that is a multiple of 32 works. Normalisation: CLIP mean/std (the
LAION CLIP checkpoint's). Reaches the common grid bilinearly (Eagle: none needed at 1024). ``trainable_blocks``
counts stages (4). Not tileable.
"""

from __future__ import annotations

from eaglesearch.model.experts.preset import CLIP_MEAN, CLIP_STD, ExpertPreset
from eaglesearch.model.experts.registry import ExpertFamily, register_expert

FEATURE_LAYER = "stage 4 output (stride 32), no head norm (as Eagle)"


PRESETS = {
    "tiny": ExpertPreset(
        architecture="convnext_atto",
        resolution=128,
        stride=32,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        feature_layer=FEATURE_LAYER,
        kwargs={"depths": (1, 1, 2, 1), "dims": (32, 64, 96, 128), "num_classes": 0},
        sized=False,
        resample="bilinear",
        blocks=4,
        pretext="classify", pretext_settings={"steps": 400, "batch_size": 32},
    ),
    "paper": ExpertPreset(
        architecture="convnext_xxlarge",
        resolution=1024,
        stride=32,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        feature_layer=FEATURE_LAYER,
        kwargs={"num_classes": 0},
        weights="convnext_xxlarge.clip_laion2b_soup",
        sized=False,
        resample="bilinear",
        blocks=4,
        source="timm convnext_xxlarge.clip_laion2b_soup (laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup)",
        output=(32, 3072),
    ),
}

CONVNEXT = register_expert(ExpertFamily(
    name="convnext",
    description="ConvNeXt (ConvNeXt-XXL LAION CLIP in the paper)",
    presets=PRESETS,
    build="eaglesearch.model.experts.timm_expert:ConvNeXtExpert.from_spec",
))
