"""What an expert family declares about one named configuration, without torch: :class:`ExpertPreset`.

Everything validation needs (resolution, stride, trainable blocks, whether weights exist, tileability) is here, so
``eaglesearch validate`` checks a search space without importing torch; the modules that build experts
(``timm_expert.py``, ``<family>_model.py``) read the same presets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ResampleMode = Literal["bilinear", "unshuffle", "auto"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PAD_FILL: tuple[int, int, int] = (int(255 * CLIP_MEAN[0]), int(255 * CLIP_MEAN[1]), int(255 * CLIP_MEAN[2]))
"""LLaVA's ``expand2square`` background, ``tuple(int(x * 255) for x in image_processor.image_mean)`` = (122, 116, 104):
the colour ``data.image.resize: pad`` fills with unless the recipe names one."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ExpertPreset:
    """One named configuration of an expert family (``tiny`` or ``paper``).

    ``architecture`` is a timm model name (or a transformers model class name) and ``kwargs`` its constructor
    arguments (``img_size`` is filled from the resolution when ``sized``). ``weights`` is what ``pretrained: true``
    loads (a timm pretrained tag ``arch.tag``, or a hub repo id); ``None`` means random init only. ``resample`` is
    how the feature map reaches the common grid (see ``eaglesearch.model.resample``) and ``blocks`` how many
    transformer blocks (ConvNeXt: stages) ``trainable_blocks`` may leave trainable. ``pretext`` (tiny presets) names
    the pretext task the tiny world pretrains the expert on (``eaglesearch/train/pretext_tasks.py``) and
    ``pretext_settings`` overrides its recipe (steps, batch size, lr); the weights are then a content-addressed
    artifact that the stage pipeline loads. Paper presets state where their weights come from (``source``) and the
    map they give at their resolution (``output``: native grid side, channels), which a test checks against the
    built expert and against ``reference/eagle.md``.
    """

    architecture: str
    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_layer: str
    stride: int
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    weights: str | None = None
    sized: bool = True
    resample: ResampleMode = "auto"
    blocks: int = 0
    pretext: str | None = None
    pretext_settings: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    output: tuple[int, int] | None = None
    tileable: bool = True  # False: this preset is not a plain ViT even though its family's other presets are
